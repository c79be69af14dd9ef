/*-------------------------------------------------------------------------
 *
 * http_client.h
 *	  HTTP requests over libcurl, waited for on the process latch.
 *
 * src/http_client.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_HTTP_CLIENT_H
#define XPLENTY_HTTP_CLIENT_H

#include <curl/curl.h>

#include "lib/ilist.h"

typedef enum XplentyHttpMethod
{
	XPLENTY_HTTP_GET,
	XPLENTY_HTTP_POST,
	XPLENTY_HTTP_DELETE
} XplentyHttpMethod;

/*
 * What became of a request, seen from the question that matters most for a
 * call that is not idempotent: could the API have acted on it?
 */
typedef enum XplentyHttpOutcome
{
	XPLENTY_HTTP_PENDING,		/* still in flight */
	XPLENTY_HTTP_ANSWERED,		/* a whole answer arrived; see status */
	XPLENTY_HTTP_NOT_SENT,		/* failed before any of it was sent */
	XPLENTY_HTTP_MAYBE_SENT,	/* failed after it was (perhaps) sent */
	XPLENTY_HTTP_TOO_LARGE		/* answered, but larger than allowed */
} XplentyHttpOutcome;

typedef struct XplentyHttpRequest
{
	/* Filled in by the caller before xplenty_http_start. */
	XplentyHttpMethod method;
	char	   *url;			/* full URL, no credentials in it */
	const char *body;			/* JSON body, or NULL */
	size_t		body_len;
	bool		single_attempt; /* never let libcurl send it twice */
	void	   *owner;			/* for the caller: what the request is for */

	/* Filled in by the client. */
	XplentyHttpOutcome outcome;
	long		status;			/* HTTP status, 0 if none arrived */
	CURLcode	curl_code;
	char		curl_error[CURL_ERROR_SIZE];
	int			attempts;		/* times libcurl began sending it */
	char	   *answer;			/* body of the answer, NUL-terminated */
	size_t		answer_len;
	size_t		answer_cap;
	size_t		answer_limit;
	long		retry_after;	/* seconds from Retry-After, or -1 */
	long		ratelimit_limit;	/* X-RateLimit-Limit, or -1 */
	long		ratelimit_remaining;	/* X-RateLimit-Remaining, or -1 */
	char	   *link_header;	/* Link header, or NULL */
	double		elapsed;		/* seconds from start to finish */

	/* Private to the client. */
	struct XplentyEasyHandle *handle;	/* while in flight */
	MemoryContext context;		/* where answer and link_header live */
	bool		too_large;		/* the answer passed answer_limit */
	bool		on_finished_list;
	dlist_node	node;
} XplentyHttpRequest;

typedef struct XplentyHttpClient XplentyHttpClient;

/* What xplenty_http_wait saw besides finished requests. */
#define XPLENTY_WAKE_LATCH		0x01
#define XPLENTY_WAKE_TIMEOUT	0x02

extern XplentyHttpClient *xplenty_http_client_create(MemoryContext context,
													 int max_connections);
extern XplentyHttpClient *xplenty_http_session_client(void);
extern void xplenty_http_start(XplentyHttpClient *client,
							   XplentyHttpRequest *req,
							   const char *api_key);
extern int	xplenty_http_wait(XplentyHttpClient *client, long timeout_ms,
							  uint32 wait_event_info);
extern XplentyHttpRequest *xplenty_http_next_finished(XplentyHttpClient *c);
extern void xplenty_http_cancel(XplentyHttpClient *client,
								XplentyHttpRequest *req);
extern int	xplenty_http_in_flight(XplentyHttpClient *client);
extern bool xplenty_http_has_finished(XplentyHttpClient *client);
extern void xplenty_http_client_set_max_connections(XplentyHttpClient *client,
													 int max_connections);
extern void xplenty_http_perform(XplentyHttpRequest *req,
								 const char *api_key);

#endif							/* XPLENTY_HTTP_CLIENT_H */
