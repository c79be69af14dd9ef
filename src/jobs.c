/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  Following jobs from SQL: xplenty_job(), xplenty_stop_job(),
 *	  xplenty_job_log() and xplenty_jobs().
 *
 * Each is one or a few synchronous API calls, with the same errors as
 * xplenty_run_job; unlike POST /jobs, they are safe to repeat.
 *
 * src/jobs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "api.h"

PG_FUNCTION_INFO_V1(xplenty_job);
PG_FUNCTION_INFO_V1(xplenty_stop_job);
PG_FUNCTION_INFO_V1(xplenty_job_log);
PG_FUNCTION_INFO_V1(xplenty_jobs);

/* The API's largest page. */
#define PAGE_SIZE 100

/* The most jobs xplenty_jobs reads in one call. */
#define MAX_JOBS 100000

#define JOBS_COLUMNS 12

static const char *const job_statuses[] = {
	"all", "idle", "pending", "queued", "running", "completed", "failed",
	"pending_stoppage", "stopping", "stopped", NULL
};

/*
 * job_id_argument
 *		A job ID argument, or an error if it cannot be one.
 */
static int64
job_id_argument(FunctionCallInfo fcinfo)
{
	int64		job_id = PG_GETARG_INT64(0);

	if (job_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job ID must be a positive integer"),
				 errdetail("The value given is " INT64_FORMAT ".", job_id)));
	return job_id;
}

/*
 * job_call
 *		Make a call on /jobs/:id and return the answer; what is the verb
 *		of the failure message ("get", "stop").
 */
static Jsonb *
job_call(XplentyHttpMethod method, int64 job_id, const char *what)
{
	return xplenty_api_call(method, psprintf("jobs/" INT64_FORMAT, job_id),
							200,
							psprintf("could not %s Xplenty job " INT64_FORMAT,
									 what, job_id));
}

/*
 * xplenty_job
 *		xplenty_job(job_id): GET /jobs/:id, the job as the API has it now.
 */
Datum
xplenty_job(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(job_call(XPLENTY_HTTP_GET, job_id_argument(fcinfo),
							   "get"));
}

/*
 * xplenty_stop_job
 *		xplenty_stop_job(job_id): DELETE /jobs/:id, which asks the API to
 *		terminate the job; it answers with the job, pending_stoppage.
 */
Datum
xplenty_stop_job(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(job_call(XPLENTY_HTTP_DELETE, job_id_argument(fcinfo),
							   "stop"));
}

/*
 * xplenty_job_log
 *		xplenty_job_log(job_id): the "body" of GET /jobs/:id/log.
 */
Datum
xplenty_job_log(PG_FUNCTION_ARGS)
{
	int64		job_id = job_id_argument(fcinfo);
	char	   *message = psprintf("could not get the log of Xplenty job "
								   INT64_FORMAT, job_id);
	Jsonb	   *answer;
	char	   *body;

	answer = xplenty_api_call(XPLENTY_HTTP_GET,
							  psprintf("jobs/" INT64_FORMAT "/log", job_id),
							  200, message);
	body = xplenty_jsonb_get_text(answer, "body");
	if (body == NULL)
	{
		char	   *text = JsonbToCString(NULL, &answer->root,
										  VARSIZE(answer));

		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("%s", message),
				 errdetail("The answer has no \"body\" text: %s",
						   xplenty_answer_snippet(text, strlen(text)))));
	}
	PG_RETURN_TEXT_P(cstring_to_text(body));
}

/*
 * text_argument_in
 *		A text argument that must be one of the given words.
 */
static char *
text_argument_in(FunctionCallInfo fcinfo, int argno, const char *argname,
				 const char *const *allowed)
{
	char	   *value;
	StringInfoData list;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));

	initStringInfo(&list);
	for (int i = 0; allowed[i] != NULL; i++)
	{
		if (strcmp(value, allowed[i]) == 0)
			return value;
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", allowed[i]);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("\"%s\" is not a valid %s", value, argname),
			 errhint("Give one of: %s.", list.data)));
	return NULL;				/* keep compiler quiet */
}

/*
 * time_datum
 *		A job's time member as a timestamptz datum; null if it has none.
 */
static Datum
time_datum(Jsonb *job, const char *key, bool *isnull)
{
	char	   *text = xplenty_jsonb_get_text(job, key);
	TimestampTz ts;

	*isnull = (text == NULL || !xplenty_parse_api_time(text, &ts));
	return *isnull ? (Datum) 0 : TimestampTzGetDatum(ts);
}

/*
 * put_job_row
 *		Add a row for one job of a list answer to the result.
 */
static void
put_job_row(ReturnSetInfo *rsinfo, Jsonb *job)
{
	Datum		values[JOBS_COLUMNS];
	bool		nulls[JOBS_COLUMNS];
	int64		n;
	double		progress;
	char	   *text;

	memset(nulls, false, sizeof(nulls));

	nulls[0] = !xplenty_jsonb_get_int64(job, "id", &n);
	values[0] = Int64GetDatum(n);
	text = xplenty_jsonb_get_text(job, "status");
	nulls[1] = (text == NULL);
	values[1] = text ? CStringGetTextDatum(text) : (Datum) 0;
	nulls[2] = !xplenty_jsonb_get_int64(job, "package_id", &n) ||
		n <= 0 || n > PG_INT32_MAX;
	values[2] = Int32GetDatum((int32) n);
	nulls[3] = !xplenty_jsonb_get_int64(job, "cluster_id", &n) ||
		n <= 0 || n > PG_INT32_MAX;
	values[3] = Int32GetDatum((int32) n);
	nulls[4] = !xplenty_jsonb_get_float8(job, "progress", &progress);
	values[4] = Float8GetDatum(progress);
	values[5] = time_datum(job, "created_at", &nulls[5]);
	values[6] = time_datum(job, "started_at", &nulls[6]);
	values[7] = time_datum(job, "updated_at", &nulls[7]);
	values[8] = time_datum(job, "completed_at", &nulls[8]);
	values[9] = time_datum(job, "failed_at", &nulls[9]);
	text = xplenty_jsonb_get_text(job, "errors");
	nulls[10] = (text == NULL || text[0] == '\0');
	values[10] = nulls[10] ? (Datum) 0 : CStringGetTextDatum(text);
	values[11] = JsonbPGetDatum(job);

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * xplenty_jobs
 *		xplenty_jobs(status, package, since, max_jobs, sort, direction):
 *		the account's jobs as rows, read from GET /jobs a page at a time
 *		until max_jobs rows or the last page.
 */
Datum
xplenty_jobs(PG_FUNCTION_ARGS)
{
	static const char *const sorts[] = {"created", "updated", NULL};
	static const char *const directions[] = {"desc", "asc", NULL};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *status = text_argument_in(fcinfo, 0, "job status",
										  job_statuses);
	char	   *sort = text_argument_in(fcinfo, 4, "sort order", sorts);
	char	   *direction = text_argument_in(fcinfo, 5, "sort direction",
											 directions);
	StringInfoData filter;
	int			max_jobs;
	int			offset = 0;

	if (PG_ARGISNULL(3) || PG_GETARG_INT32(3) < 1 ||
		PG_GETARG_INT32(3) > MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_jobs must be between 1 and %d", MAX_JOBS)));
	max_jobs = PG_GETARG_INT32(3);

	initStringInfo(&filter);
	appendStringInfo(&filter, "status=%s&sort=%s&direction=%s",
					 status, sort, direction);
	if (!PG_ARGISNULL(1))
	{
		if (PG_GETARG_INT32(1) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("package ID must be a positive integer"),
					 errdetail("The value given is %d.", PG_GETARG_INT32(1))));
		appendStringInfo(&filter, "&package_id=%d", PG_GETARG_INT32(1));
	}
	if (!PG_ARGISNULL(2))
		appendStringInfo(&filter, "&since=%s",
						 xplenty_format_api_time(PG_GETARG_TIMESTAMPTZ(2)));

	InitMaterializedSRF(fcinfo, 0);

	while (offset < max_jobs)
	{
		int			limit = Min(PAGE_SIZE, max_jobs - offset);
		int			count = 0;
		Jsonb	   *page;
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		CHECK_FOR_INTERRUPTS();
		page = xplenty_api_call(XPLENTY_HTTP_GET,
								psprintf("jobs?%s&limit=%d&offset=%d",
										 filter.data, limit, offset),
								200, "could not list Xplenty jobs");
		if (!JB_ROOT_IS_ARRAY(page) || JB_ROOT_IS_SCALAR(page))
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("could not list Xplenty jobs"),
					 errdetail("The answer is not a JSON array.")));

		it = JsonbIteratorInit(&page->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			count++;
			if (v.type == jbvBinary &&
				JsonContainerIsObject(v.val.binary.data))
				put_job_row(rsinfo, JsonbValueToJsonb(&v));
		}

		offset += count;
		if (count < limit)
			break;
	}

	return (Datum) 0;
}
