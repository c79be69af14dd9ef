/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  xplenty_wait(): wait, in a script or a test, for a queued request's
 *	  job to end.
 *
 * It is a procedure, run by CALL, that commits after each look at the row,
 * so that between looks the session holds no snapshot.  A wait inside one
 * statement (a function called by SELECT, or a DO loop) holds one snapshot
 * for as long as it waits: no row version the worker leaves behind in the
 * meantime can be pruned or vacuumed, and each of the worker's claims has
 * to step over all of them.  With one session waiting like that, the worker
 * drained its queue 1.4 to 2.2 times slower (bench/README.md).
 *
 * src/wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "queue.h"

PG_FUNCTION_INFO_V1(xplenty_wait);

/* How long the procedure sleeps between two looks at the row. */
#define WAIT_LOOK_INTERVAL_MS 100

/*
 * xplenty_wait
 *		CALL xplenty_wait(queue_id, timeout): wait until the request's job
 *		has ended, or the request failed or is 'unknown', and return its
 *		status and its job's status.  Raises query_canceled at the timeout.
 *
 * Each look is a transaction of its own, committed before the procedure
 * sleeps: so each sees what the worker has committed since the last, and
 * the session holds no snapshot (no backend_xmin) and no lock while it
 * sleeps.  That is possible only in a CALL outside a transaction block;
 * elsewhere the procedure refuses to wait at all, rather than wait holding
 * a snapshot.  It sleeps on its latch, and so answers to a cancel, to
 * statement_timeout and to a shutdown at once.
 */
Datum
xplenty_wait(PG_FUNCTION_ARGS)
{
	CallContext *call = (CallContext *) fcinfo->context;
	MemoryContext caller_context = CurrentMemoryContext;
	MemoryContext look_context;
	TimestampTz deadline;
	Interval   *timeout;
	char	   *timeout_text;
	int64		queue_id;
	char	   *status = NULL;
	char	   *job_status = NULL;
	bool		ended = false;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue_id and timeout of xplenty_wait must not be "
						"null")));
	queue_id = PG_GETARG_INT64(0);
	timeout = PG_GETARG_INTERVAL_P(1);
	timeout_text = DatumGetCString(DirectFunctionCall1(interval_out,
										PointerGetDatum(timeout)));

	if (call == NULL || !IsA(call, CallContext) || call->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("xplenty_wait cannot wait inside a transaction "
						"block"),
				 errdetail("It commits after each look at the queue, so as "
						   "to hold no snapshot while it waits."),
				 errhint("Run CALL xplenty_wait(...) outside BEGIN ... "
						 "COMMIT, and not from a function.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	deadline = DatumGetTimestampTz(
		DirectFunctionCall2(timestamptz_pl_interval,
							TimestampTzGetDatum(GetCurrentTimestamp()),
							IntervalPGetDatum(timeout)));

	/* Each look's strings, forgotten at the next look. */
	look_context = AllocSetContextCreate(CurrentMemoryContext,
										 "xplenty_wait look",
										 ALLOCSET_SMALL_SIZES);

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (;;)
	{
		long		sleep_ms;

		MemoryContextReset(look_context);
		if (!xplenty_queue_look(queue_id, look_context, &status,
								&job_status, &ended))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queued request " INT64_FORMAT " does not exist",
							queue_id)));
		if (ended)
			break;

		sleep_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												   deadline);
		if (sleep_ms <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out waiting for queued request "
							INT64_FORMAT, queue_id),
					 errdetail("After %s the request is %s%s%s.",
							   timeout_text, status,
							   job_status ? ", its job " : "",
							   job_status ? job_status : ""),
					 errhint("Give a longer timeout, or look again later.")));

		/* Release the look's snapshot before sleeping. */
		SPI_commit();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT |
						 WL_EXIT_ON_PM_DEATH,
						 Min(sleep_ms, WAIT_LOOK_INTERVAL_MS),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/* The answer must outlive SPI's memory. */
	MemoryContextSwitchTo(caller_context);
	values[0] = CStringGetTextDatum(status);
	if (job_status != NULL)
		values[1] = CStringGetTextDatum(job_status);
	else
		nulls[1] = true;
	SPI_finish();

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}
