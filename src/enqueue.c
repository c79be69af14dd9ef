/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  xplenty_enqueue_job() and xplenty_enqueue_job_trigger(): queue a
 *	  request to run a job, to be sent by the background worker.
 *
 * A request is checked exactly as xplenty_run_job checks one, so that a
 * call that cannot succeed fails now, in the caller's transaction, and not
 * hours later in the worker.  It becomes visible to the worker when the
 * caller commits; a rollback launches nothing.
 *
 * src/enqueue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "job_request.h"
#include "queue.h"

PG_FUNCTION_INFO_V1(xplenty_enqueue_job);
PG_FUNCTION_INFO_V1(xplenty_enqueue_job_trigger);

/* A trigger's arguments, parsed once and kept in fn_extra. */
typedef struct TriggerRequest
{
	Oid			trigger_oid;
	XplentyJobRequest request;
	char	   *dedup_key;
} TriggerRequest;

/*
 * xplenty_enqueue_job
 *		xplenty_enqueue_job(cluster, package, variables, dynamic_variables,
 *		dedup_key, depends_on): queue a request and return its queue ID.
 *
 * With a deduplication key, a request that has the same key and is still
 * to be sent is returned instead of a new one: a schedule or a trigger
 * that fires twice starts one run.  With depends_on, the request is sent
 * only once the job of that request has completed.
 */
Datum
xplenty_enqueue_job(PG_FUNCTION_ARGS)
{
	XplentyJobRequest request;
	char	   *dedup_key = NULL;
	int64		depends_on = 0;

	xplenty_job_request_from_args(fcinfo, &request);
	xplenty_check_job_request(&request);
	if (!PG_ARGISNULL(4))
		dedup_key = text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (!PG_ARGISNULL(5))
	{
		depends_on = PG_GETARG_INT64(5);
		if (depends_on <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("depends_on must be the ID of a queued request"),
					 errdetail("The value given is " INT64_FORMAT ".",
							   depends_on)));
	}

	PG_RETURN_INT64(xplenty_queue_insert(&request, dedup_key, depends_on));
}

/*
 * trigger_int_argument
 *		A trigger argument that must be a positive integer ID.
 */
static int32
trigger_int_argument(Trigger *trigger, int n, const char *what)
{
	const char *arg = trigger->tgargs[n];
	char	   *end;
	long		value;

	errno = 0;
	value = strtol(arg, &end, 10);
	if (end == arg || *end != '\0' || errno == ERANGE || value <= 0 ||
		value > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s ID of trigger \"%s\" must be a positive integer",
						what, trigger->tgname),
				 errdetail("The argument given is \"%s\".", arg)));
	return (int32) value;
}

/*
 * trigger_jsonb_argument
 *		An optional trigger argument holding JSON; empty means not given.
 */
static Jsonb *
trigger_jsonb_argument(Trigger *trigger, int n)
{
	Datum		arg;

	if (trigger->tgnargs <= n || trigger->tgargs[n][0] == '\0')
		return NULL;
	arg = CStringGetDatum(trigger->tgargs[n]);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, arg));
}

/*
 * trigger_request
 *		The request a trigger's arguments describe, parsed and checked at
 *		the first row and kept for the rest of the statement.
 */
static TriggerRequest *
trigger_request(FunctionCallInfo fcinfo, Trigger *trigger)
{
	TriggerRequest *tr = (TriggerRequest *) fcinfo->flinfo->fn_extra;
	MemoryContext oldcontext;

	if (tr != NULL && tr->trigger_oid == trigger->tgoid)
		return tr;

	if (trigger->tgnargs < 2 || trigger->tgnargs > 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" gives xplenty_enqueue_job_trigger %d "
						"arguments", trigger->tgname, trigger->tgnargs),
				 errhint("Give the cluster ID, the package ID and optionally "
						 "the variables, the dynamic variables (as JSON, '' "
						 "for none) and a deduplication key.")));

	oldcontext = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	tr = palloc0(sizeof(TriggerRequest));
	tr->trigger_oid = trigger->tgoid;
	tr->request.cluster_id = trigger_int_argument(trigger, 0, "cluster");
	tr->request.package_id = trigger_int_argument(trigger, 1, "package");
	tr->request.variables = trigger_jsonb_argument(trigger, 2);
	tr->request.dynamic_variables = trigger_jsonb_argument(trigger, 3);
	if (trigger->tgnargs > 4 && trigger->tgargs[4][0] != '\0')
		tr->dedup_key = pstrdup(trigger->tgargs[4]);
	MemoryContextSwitchTo(oldcontext);

	xplenty_check_job_request(&tr->request);
	fcinfo->flinfo->fn_extra = tr;
	return tr;
}

/*
 * xplenty_enqueue_job_trigger
 *		AFTER trigger, FOR EACH ROW or FOR EACH STATEMENT: queue a request
 *		with the trigger's arguments (cluster, package [, variables
 *		[, dynamic_variables [, dedup_key]]]).
 *
 * A statement trigger queues one request per statement, which is what
 * "new data arrived" usually calls for; a row trigger, one per row.
 */
Datum
xplenty_enqueue_job_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerRequest *tr;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("xplenty_enqueue_job_trigger() was not called by "
						"the trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" must be an AFTER trigger",
						trigdata->tg_trigger->tgname),
				 errhint("Create it with AFTER INSERT, UPDATE, DELETE or "
						 "TRUNCATE.")));

	tr = trigger_request(fcinfo, trigdata->tg_trigger);
	(void) xplenty_queue_insert(&tr->request, tr->dedup_key, 0);

	return PointerGetDatum(NULL);
}
