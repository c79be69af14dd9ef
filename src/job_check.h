/*-------------------------------------------------------------------------
 *
 * job_check.h
 *	  Finding out whether a request that may have reached the API created
 *	  a job, before anything is sent again.
 *
 * src/job_check.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_JOB_CHECK_H
#define XPLENTY_JOB_CHECK_H

#include "failure.h"
#include "http_client.h"
#include "queue.h"

/* How many pages of 100 jobs a check reads before it gives up. */
#define XPLENTY_CHECK_MAX_PAGES 10

typedef enum XplentyCheckResult
{
	XPLENTY_CHECK_MATCHES,		/* candidates found; see the list */
	XPLENTY_CHECK_NEXT_PAGE,	/* none on this page; read the next */
	XPLENTY_CHECK_NONE,			/* no job was created: safe to resend */
	XPLENTY_CHECK_FAILED,		/* the API could not be asked */
	XPLENTY_CHECK_TOO_MANY		/* too many jobs to look through */
} XplentyCheckResult;

/* A job that matches the request, from the list answer. */
typedef struct XplentyJobMatch
{
	int64		job_id;
	Jsonb	   *job;
} XplentyJobMatch;

extern void xplenty_prepare_job_check(XplentyHttpRequest *req,
									  const XplentyQueuedRequest *queued,
									  int page);
extern XplentyCheckResult
			xplenty_job_check_answer(const XplentyHttpRequest *req,
									 const XplentyQueuedRequest *queued,
									 int page, List **matches,
									 bool *more_pages,
									 XplentyFailure *failure);
extern XplentyCheckResult xplenty_job_check_next(int page, bool more_pages);

#endif							/* XPLENTY_JOB_CHECK_H */
