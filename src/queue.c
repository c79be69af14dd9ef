/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The queue table, xplenty_queue: every statement run against it.
 *
 * All SQL that touches the queue lives here, prepared once per process and
 * kept, so that a trigger that queues a request per row and a worker that
 * records thousands of answers a second do not plan the same statements
 * again and again.  Statements name the table with its schema and use
 * only pg_catalog operators, so no search_path can redirect them.
 *
 * Requests are inserted with the rights of the table's owner: a role that
 * may queue jobs gets EXECUTE on xplenty_enqueue_job and SELECT on the
 * table, never INSERT or UPDATE, so that it cannot forge a row that says
 * a job was submitted, or bypass the checks on a request.
 *
 * src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "queue.h"
#include "wakeup.h"

/* The statements, by number, each prepared once and kept. */
typedef enum QueueStatement
{
	STMT_INSERT,
	STMT_FIND_PENDING_KEY,
	STMT_RECOVER,
	STMT_CLAIM_SENDS,
	STMT_CLAIM_CHECKS,
	STMT_RECORD_ANSWERS,
	STMT_JOB_ADOPTED,
	STMT_MS_UNTIL_DUE,
	STMT_DELETE_FINISHED,
	STMT_REQUEST_EXISTS,
	STMT_CLAIM_POLLS,
	STMT_RESOLVE_WAITING,
	STMT_TWIN_SUBMITTING,
	STMT_WAIT_LOOK,
	NUM_STATEMENTS
} QueueStatement;

/*
 * How a claim names the rows it takes: "id = ANY (ARRAY(subquery))", not
 * "id IN (subquery)".  The subquery, with its LIMIT $1, is then an initial
 * plan whose IDs are looked up in the primary key.  Planned without the
 * limit's value, "IN" becomes a hash join over a scan of the whole table;
 * the plan cache then judged a custom plan cheaper, and planned each claim
 * anew.
 */
#define IN_CLAIMED "OPERATOR(pg_catalog.=) ANY (ARRAY"

/* Statuses in which a request is still to be sent. */
#define PENDING_STATUSES "('waiting', 'queued', 'submitting', 'checking')"

/*
 * The answers of a round, recorded by one statement (STMT_RECORD_ANSWERS):
 * each is a kind of change, and the values of the columns that kind sets,
 * passed as one array per column.
 */
#define ANSWER_SUBMITTED 's'	/* the job was created */
#define ANSWER_PENDING	'p'		/* to be sent or checked again */
#define ANSWER_FINAL	'f'		/* given up */
#define ANSWER_JOB		'j'		/* a poll learnt of the job */
#define ANSWER_POLL_FAILED 'e'	/* a poll failed */

#define ANSWER_COLUMNS 12

/*
 * The SQL of STMT_RECORD_ANSWERS: a test of the kind (by its letter, one
 * of the ANSWER_* above), a due time.
 */
#define KIND_IS(k) "a.kind OPERATOR(pg_catalog.=) '" k "'"
#define DUE_IN(ms) \
	"pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(" \
	"secs => " ms " OPERATOR(pg_catalog./) 1000.0)"
/*
 * unnest($1, $2, ...) of several arrays, which only an unqualified unnest
 * can be written as.
 */
#define UNNEST(n) "pg_catalog.unnest($" n ")"
/* A column of the job: set by a 201 or a poll, kept otherwise. */
#define IF_JOB_SEEN(col) \
	"CASE WHEN " KIND_IS("s") " OR " KIND_IS("j") " THEN a." col " " \
	"ELSE q." col " END"

/* The channel job status changes are announced on. */
#define NOTIFY_CHANNEL "xplenty_job_status"

static SPIPlanPtr plans[NUM_STATEMENTS];
static Oid	plans_relid = InvalidOid;

static Oid	queue_relid(bool missing_ok);
static SPIPlanPtr get_plan(QueueStatement which);
static void run_plan(QueueStatement which, Datum *values,
					 const char *nulls, int expected);
static void execute_plan(QueueStatement which, Datum *values,
						 const char *nulls, int expected);

/*
 * extension_schema
 *		The schema the extension was created in, or InvalidOid.
 *
 * (PostgreSQL 15 does not export get_extension_schema.)
 */
static Oid
extension_schema(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("xplenty"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return schema;
}

/*
 * queue_relid
 *		The OID of the extension's queue table, or InvalidOid if the
 *		extension is not installed in this database and missing_ok.
 *
 * The answer is remembered, and only looked up again once the table it
 * names is gone: a trigger queuing a request per row should not scan
 * pg_extension for each.
 */
static Oid
queue_relid(bool missing_ok)
{
	static Oid	cached_relid = InvalidOid;
	Oid			relid = InvalidOid;
	Oid			schema;

	if (OidIsValid(cached_relid) &&
		SearchSysCacheExists1(RELOID, ObjectIdGetDatum(cached_relid)))
		return cached_relid;

	schema = extension_schema();
	if (OidIsValid(schema))
		relid = get_relname_relid("xplenty_queue", schema);
	cached_relid = relid;
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the xplenty queue table does not exist"),
				 errhint("Run CREATE EXTENSION xplenty in this database.")));
	return relid;
}

/*
 * queue_owner
 *		The role that owns the queue table.
 */
static Oid
queue_owner(void)
{
	Oid			relid = queue_relid(false);
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * xplenty_queue_exists
 *		Is the extension, and so its queue, installed in this database?
 */
bool
xplenty_queue_exists(void)
{
	return OidIsValid(queue_relid(true));
}

/*
 * The statements: their SQL, with the queue table's qualified name in
 * place of each %1$s, their parameter types, and whether they always take
 * their generic plan.  The worker runs its claims and its record of the
 * answers every round; their generic plans are as good as a custom one,
 * but the plan cache, which compares estimated costs, would often plan
 * them anew for each round.  Indexed by QueueStatement.
 */
typedef struct QueueStatementDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[ANSWER_COLUMNS];
	bool		generic;		/* always use the generic plan */
} QueueStatementDef;

static const QueueStatementDef statements[NUM_STATEMENTS] = {
	[STMT_INSERT] = {
		"INSERT INTO %1$s (cluster_id, package_id, "
		"variables, dynamic_variables, dedup_key, "
		"enqueued_by, depends_on, status) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, "
		"CASE WHEN $7 IS NULL THEN 'queued' "
		"ELSE 'waiting' END) "
		"ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL "
		"AND status IN " PENDING_STATUSES " DO NOTHING RETURNING id",
		7, {INT4OID, INT4OID, JSONBOID, JSONBOID, TEXTOID, NAMEOID, INT8OID}
	},
	[STMT_FIND_PENDING_KEY] = {
		"SELECT id FROM %1$s "
		"WHERE dedup_key OPERATOR(pg_catalog.=) $1 "
		"AND status IN " PENDING_STATUSES,
		1, {TEXTOID}
	},
	[STMT_RECOVER] = {
		"UPDATE %1$s SET status = 'checking', "
		"next_attempt_at = pg_catalog.now(), "
		"updated_at = pg_catalog.now(), "
		"last_error = 'the worker stopped while the "
		"request was being sent' "
		"WHERE status = 'submitting'",
		0, {InvalidOid}
	},
	[STMT_CLAIM_SENDS] = {
		"UPDATE %1$s SET status = 'submitting', "
		"attempts = attempts OPERATOR(pg_catalog.+) 1, "
		"first_sent_at = COALESCE(first_sent_at, "
		"pg_catalog.now()), "
		"last_sent_at = pg_catalog.now(), "
		"updated_at = pg_catalog.now() "
		"WHERE id " IN_CLAIMED "(SELECT id FROM %1$s "
		"WHERE status = 'queued' AND next_attempt_at "
		"OPERATOR(pg_catalog.<=) pg_catalog.now() "
		"ORDER BY next_attempt_at, id LIMIT $1 "
		"FOR UPDATE SKIP LOCKED)) "
		"RETURNING id, cluster_id, package_id, "
		"variables, dynamic_variables, attempts, "
		"checks, first_sent_at, last_sent_at",
		1, {INT4OID}, true
	},
	[STMT_CLAIM_CHECKS] = {
		"UPDATE %1$s SET "
		"checks = checks OPERATOR(pg_catalog.+) 1, "
		"next_attempt_at = pg_catalog.now() "
		"OPERATOR(pg_catalog.+) pg_catalog.make_interval("
		"secs => $2 OPERATOR(pg_catalog./) 1000.0), "
		"updated_at = pg_catalog.now() "
		"WHERE id " IN_CLAIMED "(SELECT id FROM %1$s "
		"WHERE status = 'checking' AND next_attempt_at "
		"OPERATOR(pg_catalog.<=) pg_catalog.now() "
		"ORDER BY next_attempt_at, id LIMIT $1 "
		"FOR UPDATE SKIP LOCKED)) "
		"RETURNING id, cluster_id, package_id, "
		"variables, dynamic_variables, attempts, "
		"checks, first_sent_at, last_sent_at",
		2, {INT4OID, INT8OID}, true
	},
	[STMT_RECORD_ANSWERS] = {
		"UPDATE %1$s q SET "
		"status = COALESCE(a.status, q.status), "
		"next_attempt_at = CASE WHEN " KIND_IS("p") " "
		"THEN " DUE_IN("a.delay_ms") " ELSE q.next_attempt_at END, "
		"last_error = CASE WHEN " KIND_IS("s") " OR " KIND_IS("f") " "
		"THEN a.error WHEN " KIND_IS("p") " "
		"THEN COALESCE(a.error, q.last_error) "
		"ELSE q.last_error END, "
		"resent_after_check = q.resent_after_check OR a.resent, "
		"job_id = CASE WHEN " KIND_IS("s") " THEN a.job_id "
		"ELSE q.job_id END, "
		"submitted_at = CASE WHEN " KIND_IS("s") " "
		"THEN pg_catalog.now() ELSE q.submitted_at END, "
		"job = " IF_JOB_SEEN("job") ", "
		"job_status = " IF_JOB_SEEN("job_status") ", "
		"job_progress = " IF_JOB_SEEN("job_progress") ", "
		"job_errors = " IF_JOB_SEEN("job_errors") ", "
		"job_finished_at = " IF_JOB_SEEN("job_finished_at") ", "
		"next_poll_at = CASE WHEN " KIND_IS("p") " OR " KIND_IS("f") " "
		"THEN q.next_poll_at ELSE " DUE_IN("a.delay_ms") " END, "
		"last_poll_error = CASE WHEN " KIND_IS("j") " THEN NULL "
		"WHEN " KIND_IS("e") " THEN a.error "
		"ELSE q.last_poll_error END, "
		"updated_at = CASE WHEN " KIND_IS("e") " THEN q.updated_at "
		"ELSE pg_catalog.now() END "
		"FROM ROWS FROM (" UNNEST("1") ", " UNNEST("2") ", "
		UNNEST("3") ", " UNNEST("4") ", " UNNEST("5") ", "
		UNNEST("6") ", " UNNEST("7") ", " UNNEST("8") ", "
		UNNEST("9") ", " UNNEST("10") ", " UNNEST("11") ", "
		UNNEST("12") ") AS a(id, kind, status, delay_ms, error, "
		"resent, job_id, job, job_status, job_progress, job_errors, "
		"job_finished_at) "
		"WHERE q.id OPERATOR(pg_catalog.=) a.id",
		ANSWER_COLUMNS,
		{INT8ARRAYOID, CHARARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
			TEXTARRAYOID, BOOLARRAYOID, INT8ARRAYOID, JSONBARRAYOID,
			TEXTARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID},
		true
	},
	[STMT_JOB_ADOPTED] = {
		"SELECT 1 FROM %1$s "
		"WHERE job_id OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	},
	[STMT_MS_UNTIL_DUE] = {
		"SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', "
		"LEAST((SELECT pg_catalog.min(next_attempt_at) FROM %1$s "
		"WHERE status = 'queued'), "
		"(SELECT pg_catalog.min(next_attempt_at) FROM %1$s "
		"WHERE status = 'checking')) "
		"OPERATOR(pg_catalog.-) "
		"pg_catalog.clock_timestamp()) "
		"OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
		"(SELECT pg_catalog.ceil("
		"pg_catalog.date_part('epoch', "
		"pg_catalog.min(next_poll_at) "
		"OPERATOR(pg_catalog.-) "
		"pg_catalog.clock_timestamp()) "
		"OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 "
		"FROM %1$s WHERE status = 'submitted' "
		"AND job_finished_at IS NULL)",
		0, {InvalidOid}
	},
	[STMT_DELETE_FINISHED] = {
		"DELETE FROM %1$s WHERE id IN (SELECT f.id "
		"FROM %1$s f WHERE (f.status = 'failed' "
		"OR f.job_finished_at IS NOT NULL) "
		"AND f.updated_at "
		"OPERATOR(pg_catalog.<) (pg_catalog.now() "
		"OPERATOR(pg_catalog.-) pg_catalog.make_interval("
		"secs => $1)) AND NOT EXISTS (SELECT 1 "
		"FROM %1$s w WHERE w.status = 'waiting' "
		"AND w.depends_on OPERATOR(pg_catalog.=) f.id) "
		"LIMIT $2)",
		2, {INT4OID, INT4OID}
	},
	[STMT_REQUEST_EXISTS] = {
		"SELECT 1 FROM %1$s "
		"WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	},
	[STMT_CLAIM_POLLS] = {
		"UPDATE %1$s SET "
		"polls = polls OPERATOR(pg_catalog.+) 1, "
		"next_poll_at = pg_catalog.now() "
		"OPERATOR(pg_catalog.+) pg_catalog.make_interval("
		"secs => $2 OPERATOR(pg_catalog./) 1000.0) "
		"WHERE id " IN_CLAIMED "(SELECT id FROM %1$s "
		"WHERE status = 'submitted' "
		"AND job_finished_at IS NULL "
		"AND next_poll_at OPERATOR(pg_catalog.<=) "
		"pg_catalog.now() ORDER BY next_poll_at "
		"LIMIT $1 FOR UPDATE SKIP LOCKED)) "
		"RETURNING id, job_id, job_status, "
		"pg_catalog.date_part('epoch', pg_catalog.now() "
		"OPERATOR(pg_catalog.-) submitted_at)",
		2, {INT4OID, INT8OID}, true
	},



	[STMT_RESOLVE_WAITING] = {
		"UPDATE %1$s w SET "
		"status = CASE WHEN d.job_status = 'completed' "
		"THEN 'queued' ELSE 'failed' END, "
		"last_error = CASE "
		"WHEN d.job_status = 'completed' THEN NULL "
		"WHEN d.status = 'failed' THEN "
		"pg_catalog.format('queued request %%s, which "
		"this one depends on, failed', d.id) "
		"ELSE pg_catalog.format('job %%s of queued "
		"request %%s, which this one depends on, ended "
		"%%s', d.job_id, d.id, d.job_status) END, "
		"next_attempt_at = pg_catalog.now(), "
		"updated_at = pg_catalog.now() "
		"FROM %1$s d WHERE w.status = 'waiting' "
		"AND w.depends_on OPERATOR(pg_catalog.=) d.id "
		"AND (d.status = 'failed' OR d.job_status IN "
		"('completed', 'failed', 'stopped'))",
		0, {InvalidOid}
	},
	[STMT_TWIN_SUBMITTING] = {
		"SELECT 1 FROM %1$s WHERE status = 'submitting' "
		"AND id OPERATOR(pg_catalog.<>) $1 "
		"AND cluster_id OPERATOR(pg_catalog.=) $2 "
		"AND package_id OPERATOR(pg_catalog.=) $3 "
		"AND (variables OPERATOR(pg_catalog.=) $4 "
		"OR (variables IS NULL AND $4 IS NULL)) "
		"AND (dynamic_variables OPERATOR(pg_catalog.=) $5 "
		"OR (dynamic_variables IS NULL AND $5 IS NULL)) "
		"LIMIT 1",
		5, {INT8OID, INT4OID, INT4OID, JSONBOID, JSONBOID}
	},
	[STMT_WAIT_LOOK] = {
		"SELECT status, job_status, status IN ('failed', 'unknown') "
		"OR job_finished_at IS NOT NULL FROM %1$s "
		"WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	}
};

/*
 * get_plan
 *		The kept plan of a statement, prepared at first use.
 *
 * Plans are dropped and prepared again if the queue table is not the one
 * they were made for (the extension was dropped and created again).
 * Must be called between SPI_connect and SPI_finish.
 */
static SPIPlanPtr
get_plan(QueueStatement which)
{
	Oid			relid = queue_relid(false);

	if (relid != plans_relid)
	{
		for (int i = 0; i < NUM_STATEMENTS; i++)
		{
			if (plans[i] != NULL)
				SPI_freeplan(plans[i]);
			plans[i] = NULL;
		}
		plans_relid = relid;
	}

	if (plans[which] == NULL)
	{
		const QueueStatementDef *def = &statements[which];
		char	   *table;
		char	   *sql;
		SPIPlanPtr	plan;

		table = quote_qualified_identifier(
			get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
		sql = psprintf(def->sql, table);
		plan = SPI_prepare_cursor(sql, def->nargs, (Oid *) def->argtypes,
								  def->generic ? CURSOR_OPT_GENERIC_PLAN : 0);
		if (plan == NULL)
			elog(ERROR, "could not prepare queue statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		plans[which] = plan;
		pfree(sql);
	}
	return plans[which];
}

/*
 * run_plan
 *		Run a statement; for an UPDATE of known rows, say in a trace if it
 *		found fewer or more.
 */
static void
run_plan(QueueStatement which, Datum *values, const char *nulls,
		 int expected)
{
	int			rc;

	rc = SPI_execute_plan(get_plan(which), values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "queue statement %d failed: %s", (int) which,
			 SPI_result_code_string(rc));
	if (expected >= 0 && SPI_processed != (uint64) expected)
		elog(DEBUG1, "queue statement %d touched " UINT64_FORMAT
			 " rows, not %d", (int) which, SPI_processed, expected);
}

/*
 * execute_plan
 *		Run a statement, once the answers kept so far are written.
 */
static void
execute_plan(QueueStatement which, Datum *values, const char *nulls,
			 int expected)
{
	xplenty_queue_write_answers();
	run_plan(which, values, nulls, expected);
}

/*
 * xplenty_queue_insert
 *		Insert a checked request and return its ID; with a deduplication
 *		key, return the ID of the pending request that has it, if any.
 *
 * Runs as the table's owner (see the file header) and records who asked.
 * The worker is woken when the transaction commits.  With depends_on (0
 * for none), the request waits for that request's job to complete; as it
 * can name only a request that exists already, no cycle can form.
 */
int64
xplenty_queue_insert(const XplentyJobRequest *request, const char *dedup_key,
					 int64 depends_on)
{
	Oid			caller = GetUserId();
	Oid			save_userid;
	int			save_sec_context;
	Datum		values[7];
	char		nulls[7];
	int64		id = 0;
	bool		found = false;
	bool		isnull;

	values[0] = Int32GetDatum(request->cluster_id);
	values[1] = Int32GetDatum(request->package_id);
	values[2] = PointerGetDatum(request->variables);
	values[3] = PointerGetDatum(request->dynamic_variables);
	values[4] = dedup_key ? CStringGetTextDatum(dedup_key) : (Datum) 0;
	values[5] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(caller,
																	  false)));
	values[6] = Int64GetDatum(depends_on);
	memset(nulls, ' ', sizeof(nulls));
	if (request->variables == NULL)
		nulls[2] = 'n';
	if (request->dynamic_variables == NULL)
		nulls[3] = 'n';
	if (dedup_key == NULL)
		nulls[4] = 'n';
	if (depends_on == 0)
		nulls[6] = 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * The request depended on must be one the caller can see: looked for
	 * with the caller's rights, row-level security hides the requests of
	 * other roles, as if they did not exist.
	 */
	if (depends_on != 0)
	{
		execute_plan(STMT_REQUEST_EXISTS, &values[6], NULL, -1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("queued request " INT64_FORMAT " does not exist",
							depends_on),
					 errdetail("A request can depend only on a request "
							   "already in xplenty_queue that its role can "
							   "see.")));
	}

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(queue_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	execute_plan(STMT_INSERT, values, nulls, -1);
	if (SPI_processed == 1)
	{
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
		found = true;
	}
	else
	{
		execute_plan(STMT_FIND_PENDING_KEY, &values[4], &nulls[4], -1);
		if (SPI_processed == 1)
		{
			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1,
											 &isnull));
			found = true;
		}
	}

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	/* The pending row was committed after our snapshot was taken. */
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not queue the request: a request with "
						"deduplication key \"%s\" was queued concurrently",
						dedup_key),
				 errhint("Retry the transaction.")));

	xplenty_wake_worker_at_commit();
	return id;
}

/* Fills in a claimed request from a row of the claim's answer. */
typedef void (*ClaimedRowReader) (XplentyQueuedRequest *q, HeapTuple tuple,
								  TupleDesc desc);

/*
 * read_claimed
 *		Turn the rows a claim returned into XplentyQueuedRequests, each in
 *		a memory context of its own under parent; the list itself is made
 *		in the caller's context.
 *
 * A request's context outlives the claiming transaction and holds all
 * that is made for it until its answer is recorded; deleting it then is
 * what keeps the worker's memory flat however many requests go through.
 */
static List *
read_claimed(MemoryContext parent, ClaimedRowReader read_row)
{
	List	   *result = NIL;
	TupleDesc	desc = SPI_tuptable->tupdesc;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext context = AllocSetContextCreate(parent,
													  "xplenty request",
													  ALLOCSET_SMALL_SIZES);
		MemoryContext oldcontext = MemoryContextSwitchTo(context);
		XplentyQueuedRequest *q = palloc0(sizeof(XplentyQueuedRequest));

		q->context = context;
		read_row(q, SPI_tuptable->vals[i], desc);
		MemoryContextSwitchTo(oldcontext);
		result = lappend(result, q);
	}
	return result;
}

/*
 * read_request_row
 *		A request claimed to be sent or checked.
 */
static void
read_request_row(XplentyQueuedRequest *q, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

	q->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	q->request.cluster_id = DatumGetInt32(SPI_getbinval(tuple, desc, 2,
														&isnull));
	q->request.package_id = DatumGetInt32(SPI_getbinval(tuple, desc, 3,
														&isnull));
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	q->request.variables = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tuple, desc, 5, &isnull);
	q->request.dynamic_variables = isnull ? NULL : DatumGetJsonbPCopy(d);
	q->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 6, &isnull));
	q->checks = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
	d = SPI_getbinval(tuple, desc, 8, &isnull);
	q->first_sent_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tuple, desc, 9, &isnull);
	q->last_sent_at = isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * read_poll_row
 *		A request whose job is claimed to be asked about.
 */
static void
read_poll_row(XplentyQueuedRequest *q, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

	q->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	q->job_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
	d = SPI_getbinval(tuple, desc, 3, &isnull);
	q->job_status = isnull ? NULL : TextDatumGetCString(d);
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	q->job_age_s = isnull ? 0 : DatumGetFloat8(d);
}

/*
 * xplenty_queue_recover
 *		Mark 'checking' every request a previous worker left 'submitting'.
 *
 * Such a request may or may not have reached the API before that worker
 * died, so it is not simply sent again; see job_check.c.
 */
int
xplenty_queue_recover(void)
{
	execute_plan(STMT_RECOVER, NULL, NULL, -1);
	return (int) SPI_processed;
}

/*
 * xplenty_queue_claim
 *		Take up to limit due requests in the given status ('queued' to send,
 *		'checking' to check) and return them, in the caller's context.
 *
 * Requests to send become 'submitting', which the caller must commit before
 * it sends any of them.  Each request is in a context of its own under
 * parent; see read_claimed.  Requests to check keep their status but are not
 * due again for hold_ms, the time the check may take.
 */
List *
xplenty_queue_claim(const char *status, int limit, long hold_ms,
					MemoryContext parent)
{
	Datum		values[2];

	values[0] = Int32GetDatum(limit);
	values[1] = Int64GetDatum(hold_ms);
	if (strcmp(status, "queued") == 0)
		execute_plan(STMT_CLAIM_SENDS, values, NULL, -1);
	else
		execute_plan(STMT_CLAIM_CHECKS, values, NULL, -1);
	return read_claimed(parent, read_request_row);
}

/* The delay_ms of an answer that sets no due time. */
#define NO_DELAY (-1)

/*
 * An answer waiting to be recorded: the kind of change, and what it sets.
 * Fields a kind does not set are left zero.
 */
typedef struct QueueAnswer
{
	int64		id;
	char		kind;			/* ANSWER_* */
	const char *status;			/* the new status, or NULL to keep it */
	long		delay_ms;		/* till the next attempt, or the next poll;
								 * NO_DELAY for neither */
	const char *error;			/* last_error, or for a poll last_poll_error */
	bool		resent_after_check;
	int64		job_id;
	Jsonb	   *job;
	const XplentyJobState *state;	/* with job */
} QueueAnswer;

/* The element types of STMT_RECORD_ANSWERS's arrays, in order. */
static const Oid answer_types[ANSWER_COLUMNS] = {
	INT8OID, CHAROID, TEXTOID, INT8OID, TEXTOID, BOOLOID, INT8OID, JSONBOID,
	TEXTOID, FLOAT8OID, TEXTOID, TIMESTAMPTZOID
};

/* The answers not yet written, one array being built for each column. */
static MemoryContext answers_context = NULL;
static ArrayBuildState *answer_columns[ANSWER_COLUMNS];
static int	answer_count = 0;

/*
 * add_answer
 *		Keep an answer to be written by xplenty_queue_write_answers.
 *
 * The values are copied into answers_context as they are added, so the
 * caller may free what it passed (the worker deletes a request's memory
 * as soon as its answer is added).
 */
static void
add_answer(const QueueAnswer *a)
{
	Datum		values[ANSWER_COLUMNS];
	bool		isnull[ANSWER_COLUMNS];
	const XplentyJobState *state = a->state;

	if (answers_context == NULL)
		answers_context = AllocSetContextCreate(TopMemoryContext,
												"xplenty answers",
												ALLOCSET_DEFAULT_SIZES);
	if (answer_count == 0)
	{
		MemoryContextReset(answers_context);
		for (int i = 0; i < ANSWER_COLUMNS; i++)
			answer_columns[i] = initArrayResult(answer_types[i],
												answers_context, false);
	}

	memset(values, 0, sizeof(values));
	memset(isnull, true, sizeof(isnull));
	values[0] = Int64GetDatum(a->id);
	isnull[0] = false;
	values[1] = CharGetDatum(a->kind);
	isnull[1] = false;
	if (a->status != NULL)
	{
		values[2] = CStringGetTextDatum(a->status);
		isnull[2] = false;
	}
	if (a->delay_ms != NO_DELAY)
	{
		values[3] = Int64GetDatum(a->delay_ms);
		isnull[3] = false;
	}
	if (a->error != NULL)
	{
		values[4] = CStringGetTextDatum(a->error);
		isnull[4] = false;
	}
	values[5] = BoolGetDatum(a->resent_after_check);
	isnull[5] = false;
	if (a->kind == ANSWER_SUBMITTED)
	{
		values[6] = Int64GetDatum(a->job_id);
		isnull[6] = false;
	}
	if (a->job != NULL)
	{
		values[7] = PointerGetDatum(a->job);
		isnull[7] = false;
	}
	if (state != NULL && state->status != NULL)
	{
		values[8] = CStringGetTextDatum(state->status);
		isnull[8] = false;
	}
	if (state != NULL && state->has_progress)
	{
		values[9] = Float8GetDatum(state->progress);
		isnull[9] = false;
	}
	if (state != NULL && state->errors != NULL)
	{
		values[10] = CStringGetTextDatum(state->errors);
		isnull[10] = false;
	}
	if (state != NULL && state->finished_at != 0)
	{
		values[11] = TimestampTzGetDatum(state->finished_at);
		isnull[11] = false;
	}

	for (int i = 0; i < ANSWER_COLUMNS; i++)
		(void) accumArrayResult(answer_columns[i], values[i], isnull[i],
								answer_types[i], answers_context);
	answer_count++;
}

/*
 * xplenty_queue_write_answers
 *		Write the answers kept since the last call, all in one UPDATE.
 *
 * A statement per answer cost the worker about a third of its time: each
 * paid executor start-up, the table's CHECK constraints (which PostgreSQL
 * rebuilds from their stored form for every statement) and the partial
 * indexes' predicates again.  One statement a round pays them once.
 *
 * Every other statement of this file calls this first (see execute_plan),
 * so it sees the queue as if each answer had been written when it was
 * added; the worker calls it before it commits a round.  A request has at
 * most one HTTP request in flight, so no request has two answers here.
 */
void
xplenty_queue_write_answers(void)
{
	Datum		values[ANSWER_COLUMNS];
	int			count = answer_count;

	if (count == 0)
		return;
	for (int i = 0; i < ANSWER_COLUMNS; i++)
		values[i] = makeArrayResult(answer_columns[i], answers_context);
	answer_count = 0;
	run_plan(STMT_RECORD_ANSWERS, values, NULL, count);
	MemoryContextReset(answers_context);
}

/*
 * xplenty_queue_set_submitted
 *		The API created the job: record it, and when to ask about it next.
 *		Like every xplenty_queue_set_* function, the change is written by
 *		the next statement of this file, or by xplenty_queue_write_answers.
 */
void
xplenty_queue_set_submitted(int64 id, int64 job_id, Jsonb *job,
							const XplentyJobState *state, long poll_delay_ms,
							const char *note)
{
	add_answer(&(QueueAnswer) {
		.id = id, .kind = ANSWER_SUBMITTED, .status = "submitted",
		.delay_ms = poll_delay_ms, .error = note, .job_id = job_id,
		.job = job, .state = state
	});
}

/*
 * xplenty_queue_set_job
 *		Record what a poll learnt of a request's job.
 */
void
xplenty_queue_set_job(int64 id, Jsonb *job, const XplentyJobState *state,
					  long poll_delay_ms)
{
	add_answer(&(QueueAnswer) {
		.id = id, .kind = ANSWER_JOB, .delay_ms = poll_delay_ms,
		.job = job, .state = state
	});
}

/*
 * xplenty_queue_set_poll_failed
 *		A poll failed: say why, and ask again after delay_ms.  The job's
 *		status is left as it was: not reaching the API says nothing of it.
 */
void
xplenty_queue_set_poll_failed(int64 id, const char *error, long delay_ms)
{
	add_answer(&(QueueAnswer) {
		.id = id, .kind = ANSWER_POLL_FAILED, .delay_ms = delay_ms,
		.error = error
	});
}

/*
 * xplenty_queue_notify
 *		NOTIFY xplenty_job_status with {"queue_id", "job_id", "status"};
 *		listeners hear it when the worker's transaction commits.
 *
 * Async_Notify is what pg_notify() calls; calling it directly keeps the
 * round's answers from being written one statement at a time.
 */
void
xplenty_queue_notify(int64 id, int64 job_id, const char *status)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"queue_id\": " INT64_FORMAT
					 ", \"job_id\": " INT64_FORMAT ", \"status\": ",
					 id, job_id);
	escape_json(&payload, status ? status : "");
	appendStringInfoChar(&payload, '}');
	Async_Notify(NOTIFY_CHANNEL, payload.data);
	pfree(payload.data);
}

/*
 * xplenty_queue_resolve_waiting
 *		Queue the requests whose dependency's job completed, and fail those
 *		whose dependency failed or whose job failed or was stopped.  Returns
 *		how many it changed; failing one may fail its own dependents at the
 *		next call.
 */
int
xplenty_queue_resolve_waiting(void)
{
	execute_plan(STMT_RESOLVE_WAITING, NULL, NULL, -1);
	return (int) SPI_processed;
}

/*
 * xplenty_queue_claim_polls
 *		Take up to limit submitted requests whose jobs are due to be asked
 *		about, each in a context of its own under parent (see read_claimed);
 *		they are not due again for hold_ms.
 */
List *
xplenty_queue_claim_polls(int limit, long hold_ms, MemoryContext parent)
{
	Datum		values[2];

	values[0] = Int32GetDatum(limit);
	values[1] = Int64GetDatum(hold_ms);
	execute_plan(STMT_CLAIM_POLLS, values, NULL, -1);
	return read_claimed(parent, read_poll_row);
}

/*
 * xplenty_queue_set_pending
 *		Put a request back to wait: 'queued' to be sent again, or
 *		'checking' to be checked, after delay_ms.  A NULL error keeps the
 *		one the row has.
 */
void
xplenty_queue_set_pending(int64 id, const char *status, long delay_ms,
						  const char *error, bool resent_after_check)
{
	add_answer(&(QueueAnswer) {
		.id = id, .kind = ANSWER_PENDING, .status = status,
		.delay_ms = delay_ms, .error = error,
		.resent_after_check = resent_after_check
	});
}

/*
 * xplenty_queue_set_final
 *		Give a request up: 'failed', or 'unknown' when nobody can tell
 *		whether its job was created.
 */
void
xplenty_queue_set_final(int64 id, const char *status, const char *error)
{
	add_answer(&(QueueAnswer) {
		.id = id, .kind = ANSWER_FINAL, .status = status, .error = error,
		.delay_ms = NO_DELAY
	});
}

/*
 * xplenty_queue_job_adopted
 *		Does some request already own this job?
 */
bool
xplenty_queue_job_adopted(int64 job_id)
{
	Datum		value = Int64GetDatum(job_id);

	execute_plan(STMT_JOB_ADOPTED, &value, NULL, -1);
	return SPI_processed > 0;
}

/*
 * xplenty_queue_twin_submitting
 *		Is another request for the same job (cluster, package and
 *		variables) being sent right now?
 *
 * Its job, once created, would match a check of this request too; so a
 * check must not adopt anything while such a twin is in flight, or the
 * two requests would end up sharing one job.
 */
bool
xplenty_queue_twin_submitting(const XplentyQueuedRequest *q)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(q->id);
	values[1] = Int32GetDatum(q->request.cluster_id);
	values[2] = Int32GetDatum(q->request.package_id);
	values[3] = PointerGetDatum(q->request.variables);
	values[4] = PointerGetDatum(q->request.dynamic_variables);
	if (q->request.variables == NULL)
		nulls[3] = 'n';
	if (q->request.dynamic_variables == NULL)
		nulls[4] = 'n';
	execute_plan(STMT_TWIN_SUBMITTING, values, nulls, -1);
	return SPI_processed > 0;
}

/*
 * xplenty_queue_ms_until_due
 *		Milliseconds until the next request is due to be sent or checked,
 *		and until the next job is due to be asked about: 0 if one is due
 *		now, -1 if there is none.
 *
 * Each minimum is read from the partial index of its status.  One min()
 * over "status IN ('queued', 'checking')", which neither index covers,
 * scanned the whole table: 42 ms at 120,000 rows, in each round that
 * found the queue drained.
 */
void
xplenty_queue_ms_until_due(long *send_ms, long *poll_ms)
{
	bool		isnull;
	int64		ms;

	*send_ms = -1;
	*poll_ms = -1;
	execute_plan(STMT_MS_UNTIL_DUE, NULL, NULL, -1);
	if (SPI_processed == 0)
		return;
	ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	if (!isnull)
		*send_ms = (long) Max(ms, 0);
	ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 2, &isnull));
	if (!isnull)
		*poll_ms = (long) Max(ms, 0);
}

/*
 * xplenty_queue_delete_finished
 *		Delete up to limit requests that finished retention_s ago or more.
 */
int64
xplenty_queue_delete_finished(int retention_s, int limit)
{
	Datum		values[2];

	values[0] = Int32GetDatum(retention_s);
	values[1] = Int32GetDatum(limit);
	execute_plan(STMT_DELETE_FINISHED, values, NULL, -1);
	return (int64) SPI_processed;
}

/*
 * xplenty_queue_look
 *		Read a request's status and its job's, and whether it has ended (its
 *		job ended, or it failed or is 'unknown'), as the caller may see it;
 *		false if the caller sees no such request.  The strings are made in
 *		context.  For xplenty_wait, between SPI_connect and SPI_finish.
 */
bool
xplenty_queue_look(int64 id, MemoryContext context, char **status,
				   char **job_status, bool *ended)
{
	Datum		value = Int64GetDatum(id);
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext oldcontext;
	bool		isnull;
	Datum		d;

	execute_plan(STMT_WAIT_LOOK, &value, NULL, -1);
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	oldcontext = MemoryContextSwitchTo(context);
	d = SPI_getbinval(tuple, desc, 1, &isnull);
	*status = TextDatumGetCString(d);
	d = SPI_getbinval(tuple, desc, 2, &isnull);
	*job_status = isnull ? NULL : TextDatumGetCString(d);
	*ended = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
	MemoryContextSwitchTo(oldcontext);
	SPI_freetuptable(SPI_tuptable);
	return true;
}
