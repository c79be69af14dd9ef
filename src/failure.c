/*-------------------------------------------------------------------------
 *
 * failure.c
 *	  What went wrong with an API call, said once for an ERROR and for a
 *	  queue row alike.
 *
 * xplenty_run_job turns a failure into an ERROR; the background worker
 * writes the same words into the queue row and decides from the same
 * description whether to try again.  Keeping the mapping from HTTP status
 * and libcurl error to SQLSTATE, message, hint and retry rule in this one
 * file means the two can never disagree about what a 429 or a timeout is.
 *
 * The rule that matters most: a request that may have reached the API (a
 * timeout after it was sent, a connection that broke before the answer, a
 * 500) may have started a paid job, and the API has no idempotency key.
 * Such a failure is XPLENTY_RETRY_AFTER_CHECK, never a plain retry.
 *
 * src/failure.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "answer.h"
#include "config.h"
#include "failure.h"

static void describe_transport(const XplentyHttpRequest *req,
							   XplentyFailure *failure);
static void describe_status(const XplentyHttpRequest *req,
							XplentyFailure *failure);

/*
 * xplenty_http_reason
 *		The reason phrase of the HTTP statuses the API uses.
 */
const char *
xplenty_http_reason(long status)
{
	switch (status)
	{
		case 200:
			return "OK";
		case 201:
			return "Created";
		case 204:
			return "No Content";
		case 304:
			return "Not Modified";
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 402:
			return "Payment Required";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 406:
			return "Not Acceptable";
		case 415:
			return "Unsupported Media Type";
		case 422:
			return "Unprocessable Entity";
		case 429:
			return "Too Many Requests";
		case 500:
			return "Internal Server Error";
		case 502:
			return "Bad Gateway";
		case 503:
			return "Service Unavailable";
		case 504:
			return "Gateway Timeout";
		default:
			return "Unknown Status";
	}
}

/*
 * xplenty_describe_failure
 *		Describe how req failed, or return false if it did not: it was
 *		answered with expected_status.
 *
 * message is the caller's primary message ("could not run Xplenty package
 * 434 on cluster 52"); the description adds the SQLSTATE, a detail saying
 * what happened and where, a hint, and the retry rule.
 */
bool
xplenty_describe_failure(const XplentyHttpRequest *req, long expected_status,
						 const char *message, XplentyFailure *failure)
{
	if (xplenty_answered_with(req, expected_status))
		return false;

	memset(failure, 0, sizeof(XplentyFailure));
	failure->message = pstrdup(message);
	failure->status = req->status;

	if (req->outcome == XPLENTY_HTTP_ANSWERED)
		describe_status(req, failure);
	else
		describe_transport(req, failure);
	return true;
}

/*
 * describe_transport
 *		A request that got no whole answer: say why, and whether it left.
 */
static void
describe_transport(const XplentyHttpRequest *req, XplentyFailure *failure)
{
	const char *why = req->curl_error[0] ? req->curl_error :
		curl_easy_strerror(req->curl_code);

	if (req->outcome == XPLENTY_HTTP_TOO_LARGE)
	{
		failure->sqlerrcode = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		failure->detail =
			psprintf("The answer from \"%s\" (HTTP status %ld) is larger "
					 "than xplenty.max_response_size (%d kB).",
					 req->url, req->status, xplenty_max_response_size_kb);
		failure->hint = req->single_attempt ?
			pstrdup("The API acted on the request: check on Xplenty what "
					"it did before sending it again.") :
			pstrdup("Raise xplenty.max_response_size if answers this "
					"large are expected.");
		failure->retry = req->single_attempt ? XPLENTY_RETRY_AFTER_CHECK :
			XPLENTY_RETRY_NEVER;
		return;
	}

	if (req->outcome == XPLENTY_HTTP_NOT_SENT)
	{
		failure->sqlerrcode =
			ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
		failure->retry = XPLENTY_RETRY_SAFE;
		switch (req->curl_code)
		{
			case CURLE_COULDNT_RESOLVE_HOST:
			case CURLE_COULDNT_RESOLVE_PROXY:
				failure->detail =
					psprintf("Could not resolve the host of \"%s\": %s.",
							 req->url, why);
				failure->hint =
					pstrdup("Check xplenty.api_url, xplenty.proxy and the "
							"database server's DNS settings.");
				break;
			case CURLE_OPERATION_TIMEDOUT:
				failure->detail =
					psprintf("No connection to \"%s\" within "
							 "xplenty.connect_timeout (%d ms).",
							 req->url, xplenty_connect_timeout_ms);
				failure->hint =
					pstrdup("Check that the database server can reach the "
							"API, or raise xplenty.connect_timeout.");
				break;
			case CURLE_SSL_CONNECT_ERROR:
			case CURLE_PEER_FAILED_VERIFICATION:
			case CURLE_SSL_CACERT_BADFILE:
			case CURLE_SSL_CERTPROBLEM:
			case CURLE_SSL_CIPHER:
			case CURLE_SSL_ISSUER_ERROR:
			case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
			case CURLE_SSL_ENGINE_INITFAILED:
				failure->detail =
					psprintf("Could not set up a TLS connection to \"%s\": "
							 "%s.", req->url, why);
				failure->hint =
					pstrdup("Check xplenty.ca_file against the API server's "
							"certificate.");
				break;
			case CURLE_COULDNT_CONNECT:
				failure->detail =
					psprintf("Could not connect to \"%s\": %s.",
							 req->url, why);
				failure->hint =
					pstrdup("Check xplenty.api_url and xplenty.proxy, and "
							"that the API can be reached from the database "
							"server.");
				break;
			default:
				failure->detail =
					psprintf("The request to \"%s\" failed before it was "
							 "sent: %s.", req->url, why);
				break;
		}
		return;
	}

	/* XPLENTY_HTTP_MAYBE_SENT */
	failure->sqlerrcode = ERRCODE_CONNECTION_FAILURE;
	if (req->curl_code == CURLE_OPERATION_TIMEDOUT)
		failure->detail =
			psprintf("No answer from \"%s\" within xplenty.request_timeout "
					 "(%d ms), after the request was sent.",
					 req->url, xplenty_request_timeout_ms);
	else if (req->curl_code == CURLE_ABORTED_BY_CALLBACK)
		failure->detail =
			psprintf("The connection to \"%s\" closed after the request "
					 "was sent and before an answer arrived.", req->url);
	else
		failure->detail =
			psprintf("The connection to \"%s\" failed after the request "
					 "was sent: %s.", req->url, why);

	if (req->single_attempt)
	{
		failure->hint =
			pstrdup("The API may have acted on the request: check on "
					"Xplenty whether the job was created before running "
					"it again.");
		failure->retry = XPLENTY_RETRY_AFTER_CHECK;
	}
	else
		failure->retry = XPLENTY_RETRY_SAFE;
}

/*
 * describe_status
 *		A request answered with a status other than the one expected.
 */
static void
describe_status(const XplentyHttpRequest *req, XplentyFailure *failure)
{
	long		status = req->status;
	char	   *said = xplenty_answer_message(req->answer, req->answer_len);

	failure->detail =
		psprintf("The API answered HTTP status %ld (%s) with the message "
				 "\"%s\".", status, xplenty_http_reason(status), said);
	failure->retry = XPLENTY_RETRY_NEVER;

	switch (status)
	{
		case 400:
			failure->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case 401:
			failure->sqlerrcode = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			failure->hint =
				pstrdup("Check xplenty.api_key (or xplenty.api_key_file) "
						"and xplenty.account_id.");
			break;
		case 402:
			failure->sqlerrcode = ERRCODE_INSUFFICIENT_RESOURCES;
			failure->hint =
				pstrdup("Check the billing state of the Xplenty account.");
			break;
		case 403:
			failure->sqlerrcode = ERRCODE_INSUFFICIENT_PRIVILEGE;
			failure->hint =
				pstrdup("Check that the API key's user may do this in "
						"the account named by xplenty.account_id.");
			break;
		case 404:
			failure->sqlerrcode = ERRCODE_UNDEFINED_OBJECT;
			failure->hint =
				pstrdup("Check xplenty.account_id and the IDs given.");
			break;
		case 406:
		case 415:
			failure->sqlerrcode = ERRCODE_PROTOCOL_VIOLATION;
			failure->hint =
				pstrdup("A proxy between the database server and the API "
						"may be rewriting the request's headers.");
			break;
		case 422:
			failure->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
			failure->hint =
				pstrdup("Check the IDs and variables against the package "
						"and cluster on Xplenty.");
			break;
		case 429:
			failure->sqlerrcode = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
			failure->retry = XPLENTY_RETRY_SAFE;
			if (req->retry_after > 0)
				failure->hint =
					psprintf("The API asks to wait %ld seconds; "
							 "xplenty_enqueue_job retries on its own.",
							 req->retry_after);
			else
				failure->hint =
					pstrdup("The account may make 5000 calls an hour; "
							"xplenty_enqueue_job retries on its own.");
			break;
		case 502:
		case 503:
		case 504:
			failure->sqlerrcode = ERRCODE_CONNECTION_FAILURE;
			failure->retry = (status == 504 && req->single_attempt) ?
				XPLENTY_RETRY_AFTER_CHECK : XPLENTY_RETRY_SAFE;
			failure->hint =
				pstrdup("The API is down or overloaded; try again later.");
			break;
		default:
			if (status >= 500)
			{
				/* The API may have failed after creating the job. */
				failure->sqlerrcode = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
				failure->retry = req->single_attempt ?
					XPLENTY_RETRY_AFTER_CHECK : XPLENTY_RETRY_SAFE;
				if (req->single_attempt)
					failure->hint =
						pstrdup("The API may have acted on the request: "
								"check on Xplenty whether the job was "
								"created before running it again.");
			}
			else
				failure->sqlerrcode = ERRCODE_PROTOCOL_VIOLATION;
			break;
	}
}

/*
 * xplenty_report_failure
 *		Raise the ERROR a failure describes.
 */
void
xplenty_report_failure(const XplentyFailure *failure)
{
	ereport(ERROR,
			(errcode(failure->sqlerrcode),
			 errmsg("%s", failure->message),
			 failure->detail ? errdetail("%s", failure->detail) : 0,
			 failure->hint ? errhint("%s", failure->hint) : 0));
	pg_unreachable();
}
