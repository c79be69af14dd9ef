/*-------------------------------------------------------------------------
 *
 * failure.h
 *	  What went wrong with an API call, said once for an ERROR and for a
 *	  queue row alike.
 *
 * src/failure.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_FAILURE_H
#define XPLENTY_FAILURE_H

#include "http_client.h"

/* Whether a failed request may be sent again, and on what condition. */
typedef enum XplentyRetry
{
	XPLENTY_RETRY_NEVER,		/* it would fail the same way again */
	XPLENTY_RETRY_SAFE,			/* the API did not act on it */
	XPLENTY_RETRY_AFTER_CHECK	/* the API may have acted on it: look first */
} XplentyRetry;

typedef struct XplentyFailure
{
	int			sqlerrcode;
	char	   *message;		/* primary message, PostgreSQL style */
	char	   *detail;			/* what happened, as sentences */
	char	   *hint;			/* what to do, or NULL */
	XplentyRetry retry;
	long		status;			/* HTTP status, 0 if no answer */
} XplentyFailure;

/*
 * Was req answered, and with the status expected?  xplenty_describe_failure
 * asks this first; the callers on the path of every request ask it before
 * they format their message, so that a call that went right builds none.
 */
static inline bool
xplenty_answered_with(const XplentyHttpRequest *req, long expected_status)
{
	return req->outcome == XPLENTY_HTTP_ANSWERED &&
		req->status == expected_status;
}

extern bool xplenty_describe_failure(const XplentyHttpRequest *req,
									 long expected_status,
									 const char *message,
									 XplentyFailure *failure);
extern void xplenty_report_failure(const XplentyFailure *failure)
			pg_attribute_noreturn();
extern const char *xplenty_http_reason(long status);

#endif							/* XPLENTY_FAILURE_H */
