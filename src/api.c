/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The Xplenty API calls: where they go, what they send, what a good
 *	  answer looks like.
 *
 * The pieces are separate (prepare a request, judge its answer) because
 * the background worker sends the same requests with many in flight at
 * once; xplenty_run_job_now strings them together for a synchronous call.
 *
 * src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "answer.h"
#include "api.h"
#include "config.h"
#include "failure.h"

/*
 * xplenty_api_endpoint
 *		{api_url}/{account_id}/api/{path}, palloc'd.
 *
 * The account ID has been checked to be a plain path segment (see
 * check_account_id), and path is built by us from numbers and constants.
 */
char *
xplenty_api_endpoint(const char *path)
{
	const char *account = xplenty_get_account_id();

	return psprintf("%s/%s/api/%s", xplenty_api_url, account, path);
}

/*
 * xplenty_prepare_run_job
 *		Fill in a POST /jobs request for a checked job request.
 */
void
xplenty_prepare_run_job(XplentyHttpRequest *req,
						const XplentyJobRequest *request)
{
	char	   *body = xplenty_job_request_body(request);

	memset(req, 0, sizeof(XplentyHttpRequest));
	req->method = XPLENTY_HTTP_POST;
	req->url = xplenty_api_endpoint("jobs");
	req->body = body;
	req->body_len = strlen(body);
	req->single_attempt = true;
}

/*
 * xplenty_run_job_message
 *		The primary message of a failure to run a job.
 */
char *
xplenty_run_job_message(const XplentyJobRequest *request)
{
	return psprintf("could not run Xplenty package %d on cluster %d",
					request->package_id, request->cluster_id);
}

/*
 * xplenty_run_job_answer
 *		The job from a 201 answer to POST /jobs, or an ERROR.
 *
 * A 201 whose body cannot be read means the job was created but we cannot
 * say which one it is: the error says so, with what can be shown of the
 * answer, so that nobody runs the package again without looking.
 */
Jsonb *
xplenty_run_job_answer(const XplentyHttpRequest *req,
					   const XplentyJobRequest *request, int64 *job_id)
{
	XplentyFailure failure;
	Jsonb	   *job;
	char	   *problem;

	if (!xplenty_answered_with(req, 201) &&
		xplenty_describe_failure(req, 201, xplenty_run_job_message(request),
								 &failure))
		xplenty_report_failure(&failure);

	job = xplenty_parse_job(req->answer, req->answer_len, job_id, &problem);
	if (job == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Xplenty API created a job for package %d but its "
						"answer cannot be read",
						request->package_id),
				 req->answer_len == 0 ? errdetail("%s", problem) :
				 errdetail("%s The answer begins: %s", problem,
						   xplenty_answer_snippet(req->answer,
												  req->answer_len)),
				 errhint("The job was created: find it among the package's "
						 "jobs on Xplenty before running the package "
						 "again.")));
	return job;
}

/*
 * perform_with_key
 *		Send a request on the session's client with the API key in force,
 *		and wipe our copy of the key however the call ends.
 */
static void
perform_with_key(XplentyHttpRequest *req)
{
	char	   *api_key = xplenty_get_api_key();

	PG_TRY();
	{
		xplenty_http_perform(req, api_key);
	}
	PG_FINALLY();
	{
		explicit_bzero(api_key, strlen(api_key));
	}
	PG_END_TRY();
	pfree(api_key);
}

/*
 * xplenty_api_call
 *		Make one request on the session's client and wait for its answer;
 *		return its body as jsonb, or raise the ERROR its failure calls for.
 *
 * For the calls that are safe to repeat (GET, DELETE of a job): libcurl
 * may send them again on a fresh connection when a reused one dies.
 */
Jsonb *
xplenty_api_call(XplentyHttpMethod method, const char *path,
				 long expected_status, const char *message)
{
	XplentyHttpRequest req;
	XplentyFailure failure;
	char	   *problem;
	Jsonb	   *answer;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = xplenty_api_endpoint(path);
	req.single_attempt = false;
	perform_with_key(&req);

	if (xplenty_describe_failure(&req, expected_status, message, &failure))
		xplenty_report_failure(&failure);

	answer = xplenty_parse_answer(req.answer, req.answer_len, &problem);
	if (answer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("%s", message),
				 req.answer_len == 0 ? errdetail("%s", problem) :
				 errdetail("%s The answer begins: %s", problem,
						   xplenty_answer_snippet(req.answer,
												  req.answer_len))));
	return answer;
}

/*
 * xplenty_run_job_now
 *		Run a job and wait for the API's answer; return the job.
 */
Jsonb *
xplenty_run_job_now(const XplentyJobRequest *request)
{
	XplentyHttpRequest req;
	int64		job_id;

	xplenty_prepare_run_job(&req, request);
	perform_with_key(&req);

	return xplenty_run_job_answer(&req, request, &job_id);
}
