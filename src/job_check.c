/*-------------------------------------------------------------------------
 *
 * job_check.c
 *	  Finding out whether a request that may have reached the API created
 *	  a job, before anything is sent again.
 *
 * The API has no idempotency key.  When a POST /jobs may have arrived but
 * its answer was lost (a timeout after sending, a broken connection, a 500,
 * a worker that died mid-request), the only way to know whether it started
 * a job is to list the package's jobs since the request was first sent and
 * look for one with the same cluster and variables.  The worker adopts the
 * first such job that no other request owns, and sends the request again
 * only when there is none.
 *
 * XXX: a job started by someone else (the web UI, another scheduler) for
 * the same package, cluster and variables within the window would be
 * adopted as ours.  We accept that: the alternative is to start a second
 * paid run whenever an answer is lost.  The window opens CLOCK_SKEW before
 * the first send, to allow for the API's clock being behind ours, and
 * closes CLOCK_SKEW after the last, for a clock ahead: the list is read
 * oldest first, and a page that reaches past the window's end is the last
 * one read, however many jobs the package got since.
 *
 * src/job_check.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "api.h"
#include "job_check.h"

#define CHECK_PAGE_SIZE 100
#define CLOCK_SKEW_USECS (5 * 60 * USECS_PER_SEC)

static bool job_matches(Jsonb *job, const XplentyQueuedRequest *queued,
						TimestampTz created, TimestampTz window_start,
						TimestampTz window_end);

/*
 * check_window_start
 *		The earliest creation time of a job the request can have made.
 */
static TimestampTz
check_window_start(const XplentyQueuedRequest *queued)
{
	return queued->first_sent_at - CLOCK_SKEW_USECS;
}

/*
 * check_window_end
 *		The latest creation time of a job the request can have made.
 */
static TimestampTz
check_window_end(const XplentyQueuedRequest *queued)
{
	if (queued->last_sent_at == 0)
		return DT_NOEND;
	return queued->last_sent_at + CLOCK_SKEW_USECS;
}

/*
 * job_created
 *		The creation time of a job of the list, if it has a readable one.
 */
static bool
job_created(Jsonb *job, TimestampTz *created)
{
	char	   *created_at = xplenty_jsonb_get_text(job, "created_at");

	return created_at != NULL && xplenty_parse_api_time(created_at, created);
}

/*
 * xplenty_prepare_job_check
 *		Fill in the GET /jobs request for one page of a check.
 */
void
xplenty_prepare_job_check(XplentyHttpRequest *req,
						  const XplentyQueuedRequest *queued, int page)
{
	char	   *path;

	path = psprintf("jobs?package_id=%d&since=%s&status=all&sort=created"
					"&direction=asc&limit=%d&offset=%d",
					queued->request.package_id,
					xplenty_format_api_time(check_window_start(queued)),
					CHECK_PAGE_SIZE, page * CHECK_PAGE_SIZE);
	memset(req, 0, sizeof(XplentyHttpRequest));
	req->method = XPLENTY_HTTP_GET;
	req->url = xplenty_api_endpoint(path);
	req->single_attempt = false;
}

/*
 * variables_match
 *		Does the job carry exactly our static variables, and no variable
 *		we did not give?
 *
 * Dynamic variables are expressions the API evaluates, so only their
 * names can be compared, and we do not insist that the job shows them.
 */
static bool
variables_match(Jsonb *job, const XplentyQueuedRequest *queued)
{
	JsonbValue	key;
	JsonbValue *jobvars_value;
	JsonbContainer *jobvars = NULL;
	Jsonb	   *ours = queued->request.variables;
	Jsonb	   *dynamic = queued->request.dynamic_variables;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	key.type = jbvString;
	key.val.string.val = "variables";
	key.val.string.len = 9;
	jobvars_value = findJsonbValueFromContainer(&job->root, JB_FOBJECT, &key);
	if (jobvars_value != NULL && jobvars_value->type == jbvBinary &&
		JsonContainerIsObject(jobvars_value->val.binary.data))
		jobvars = jobvars_value->val.binary.data;
	else if (jobvars_value != NULL && jobvars_value->type != jbvNull)
		return false;

	/* Each of our static variables, with the same value. */
	if (ours != NULL)
	{
		it = JsonbIteratorInit(&ours->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			JsonbValue *theirs;
			JsonbValue	name;

			if (tok != WJB_KEY)
				continue;
			name = v;
			if (jobvars == NULL)
				return false;
			theirs = findJsonbValueFromContainer(jobvars, JB_FOBJECT, &name);
			tok = JsonbIteratorNext(&it, &v, true);
			if (theirs == NULL || theirs->type != jbvString ||
				theirs->val.string.len != v.val.string.len ||
				memcmp(theirs->val.string.val, v.val.string.val,
					   v.val.string.len) != 0)
				return false;
		}
	}

	/* No variable of theirs that we did not give. */
	if (jobvars != NULL)
	{
		it = JsonbIteratorInit(jobvars);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			if ((ours == NULL ||
				 findJsonbValueFromContainer(&ours->root, JB_FOBJECT,
											 &v) == NULL) &&
				(dynamic == NULL ||
				 findJsonbValueFromContainer(&dynamic->root, JB_FOBJECT,
											 &v) == NULL))
				return false;
		}
	}
	return true;
}

/*
 * job_matches
 *		Could this job of the list, created at created, be the one our
 *		request created?
 */
static bool
job_matches(Jsonb *job, const XplentyQueuedRequest *queued,
			TimestampTz created, TimestampTz window_start,
			TimestampTz window_end)
{
	int64		cluster_id;
	int64		package_id;

	if (!xplenty_jsonb_get_int64(job, "cluster_id", &cluster_id) ||
		cluster_id != queued->request.cluster_id)
		return false;
	if (!xplenty_jsonb_get_int64(job, "package_id", &package_id) ||
		package_id != queued->request.package_id)
		return false;

	if (created < window_start || created > window_end)
		return false;

	return variables_match(job, queued);
}

/*
 * xplenty_job_check_answer
 *		Judge the answer to one page of a check.
 *
 * On XPLENTY_CHECK_MATCHES, *matches lists the matching jobs, oldest
 * first; the caller adopts the first that no other request owns, and
 * if every one is owned, goes on as xplenty_job_check_next says.  On
 * XPLENTY_CHECK_FAILED, *failure says why the API could not be asked.
 */
XplentyCheckResult
xplenty_job_check_answer(const XplentyHttpRequest *req,
						 const XplentyQueuedRequest *queued, int page,
						 List **matches, bool *more_pages,
						 XplentyFailure *failure)
{
	char	   *message;
	char	   *problem;
	Jsonb	   *list;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			count = 0;
	bool		past_window = false;
	TimestampTz window_start = check_window_start(queued);
	TimestampTz window_end = check_window_end(queued);

	*matches = NIL;
	*more_pages = false;
	message = psprintf("could not check whether queued request " INT64_FORMAT
					   " created a job", queued->id);
	if (xplenty_describe_failure(req, 200, message, failure))
		return XPLENTY_CHECK_FAILED;

	list = xplenty_parse_answer(req->answer, req->answer_len, &problem);
	if (list == NULL || !JB_ROOT_IS_ARRAY(list) || JB_ROOT_IS_SCALAR(list))
	{
		memset(failure, 0, sizeof(XplentyFailure));
		failure->sqlerrcode = ERRCODE_PROTOCOL_VIOLATION;
		failure->message = message;
		failure->detail = psprintf("%s The answer begins: %s",
								   problem ? problem :
								   "The answer is not a JSON array.",
								   xplenty_answer_snippet(req->answer,
														  req->answer_len));
		failure->retry = XPLENTY_RETRY_SAFE;
		failure->status = req->status;
		return XPLENTY_CHECK_FAILED;
	}

	it = JsonbIteratorInit(&list->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *job;
		int64		job_id;
		TimestampTz created;

		if (tok != WJB_ELEM)
			continue;
		count++;
		if (v.type != jbvBinary ||
			!JsonContainerIsObject(v.val.binary.data))
			continue;
		job = JsonbValueToJsonb(&v);

		/* A job without a readable creation time cannot be placed: skip. */
		if (!job_created(job, &created))
			continue;
		if (created > window_end)
			past_window = true;
		if (xplenty_jsonb_get_int64(job, "id", &job_id) && job_id > 0 &&
			job_matches(job, queued, created, window_start, window_end))
		{
			XplentyJobMatch *match = palloc(sizeof(XplentyJobMatch));

			match->job_id = job_id;
			match->job = job;
			*matches = lappend(*matches, match);
		}
	}

	/* Oldest first: after a job past the window's end, only later ones. */
	*more_pages = (count >= CHECK_PAGE_SIZE) && !past_window;
	if (*matches != NIL)
		return XPLENTY_CHECK_MATCHES;
	return xplenty_job_check_next(page, *more_pages);
}

/*
 * xplenty_job_check_next
 *		What a check does after a page with nothing to adopt on it.
 */
XplentyCheckResult
xplenty_job_check_next(int page, bool more_pages)
{
	if (!more_pages)
		return XPLENTY_CHECK_NONE;
	if (page + 1 >= XPLENTY_CHECK_MAX_PAGES)
		return XPLENTY_CHECK_TOO_MANY;
	return XPLENTY_CHECK_NEXT_PAGE;
}
