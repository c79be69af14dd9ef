/*-------------------------------------------------------------------------
 *
 * standby.c
 *	  Warning about standbys that could lose the worker's claims.
 *
 * The worker's promise, that a request is sent again only after the API
 * has been asked whether it created a job, rests on its claims reaching
 * disk before the requests leave.  Across a failover that holds only if
 * the promoted standby had the claims: a synchronous standby has, an
 * asynchronous one may lack the last of them, and its worker then sends
 * those requests again without asking, so their jobs may run twice
 * (test/RELIABILITY.md, "Failover").  Nothing the worker does can make an
 * asynchronous standby safe; what it can do is say so, once, where a DBA
 * looks: the server log, for each such standby it sees streaming.
 *
 * src/standby.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "standby.h"

/*
 * How often the worker looks at the standbys streaming from it, at most:
 * it looks in its rounds, which an idle worker runs once a minute.
 */
#define STANDBY_LOOK_INTERVAL_MS (10 * 1000)

static TimestampTz last_look = 0;

/*
 * The application names already warned about, as String nodes in
 * TopMemoryContext, so that list_member can compare them.
 */
static List *warned = NIL;

/*
 * xplenty_warn_async_standbys
 *		Every STANDBY_LOOK_INTERVAL_MS at most, log a WARNING for each
 *		standby streaming asynchronously that this worker has not warned
 *		about yet.
 *
 * Runs inside the worker's round, with SPI connected.  pg_stat_replication
 * says "async" of a standby that synchronous_standby_names does not name;
 * one it names but does not wait for at the moment is "potential", and is
 * left alone: promoting it instead of the synchronous one is a choice the
 * failover tool makes, not a setting.
 */
void
xplenty_warn_async_standbys(TimestampTz now)
{
	int			ret;

	if (last_look != 0 &&
		!TimestampDifferenceExceeds(last_look, now, STANDBY_LOOK_INTERVAL_MS))
		return;
	last_look = now;

	ret = SPI_execute("SELECT application_name "
					  "FROM pg_catalog.pg_stat_replication "
					  "WHERE state = 'streaming' AND sync_state = 'async'",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_stat_replication: %s",
			 SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc, 1);
		MemoryContext oldcontext;

		if (name == NULL || list_member(warned, makeString(name)))
			continue;
		ereport(WARNING,
				(errmsg("standby \"%s\" receives this server's WAL "
						"asynchronously", name),
				 errdetail("If it is promoted, the requests that the "
						   "xplenty worker claimed after the last WAL it "
						   "received are sent again without a check, and "
						   "their jobs may run twice."),
				 errhint("Name the standby in synchronous_standby_names, "
						 "or do not promote it.")));
		oldcontext = MemoryContextSwitchTo(TopMemoryContext);
		warned = lappend(warned, makeString(pstrdup(name)));
		MemoryContextSwitchTo(oldcontext);
	}
}
