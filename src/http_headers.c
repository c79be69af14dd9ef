/*-------------------------------------------------------------------------
 *
 * http_headers.c
 *	  Reading what the API's HTTP answers say outside their body.
 *
 * libcurl hands the header callback one raw line at a time and the write
 * callback the body in pieces; both come straight from the network.  What
 * is done with them is kept here, apart from libcurl and from the server's
 * memory management, so that it needs nothing but plain C: the fuzz targets
 * in fuzz/ build this file as it is, outside the server.
 *
 * src/http_headers.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <limits.h>

#include "http_headers.h"

/*
 * The largest buffer MemoryContextAlloc gives without MCXT_ALLOC_HUGE
 * (MaxAllocSize, from utils/memutils.h, which is for the server only).
 * Asking for more raises an ERROR, which must never happen in a libcurl
 * callback; and an answer that needs more could not be parsed anyway.
 */
#define MAX_ANSWER_BUFFER ((size_t) 0x3fffffff)

/*
 * header_value
 *		If the header line names the given header, return its value's start.
 */
static const char *
header_value(const char *line, size_t len, const char *name)
{
	size_t		namelen = strlen(name);

	if (len <= namelen || line[namelen] != ':' ||
		pg_strncasecmp(line, name, namelen) != 0)
		return NULL;
	line += namelen + 1;
	while (*line == ' ' || *line == '\t')
		line++;
	return line;
}

/*
 * xplenty_classify_header
 *		Say which of the headers we act on a line from libcurl is, if any.
 *
 * data is the line as libcurl gives it: len bytes, no NUL, with its CRLF.
 * line is a buffer of XPLENTY_HEADER_LINE_MAX bytes; for a header we act
 * on, the line is copied there without its line end, and *value points
 * into it at the header's value.  A status line starts a new answer (after
 * a 100 Continue, say), so the caller forgets what an earlier one said.
 */
XplentyHeaderKind
xplenty_classify_header(const char *data, size_t len, char *line,
						const char **value)
{
	*value = NULL;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		return XPLENTY_HEADER_STATUS;

	/* Most lines are headers we do not act on: their first letter says so. */
	if (len == 0 || len >= XPLENTY_HEADER_LINE_MAX ||
		(pg_ascii_tolower((unsigned char) data[0]) != 'x' &&
		 pg_ascii_tolower((unsigned char) data[0]) != 'l'))
		return XPLENTY_HEADER_OTHER;
	memcpy(line, data, len);
	line[len] = '\0';
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';

	if ((*value = header_value(line, len, "X-RateLimit-Remaining")) != NULL)
		return XPLENTY_HEADER_RATELIMIT_REMAINING;
	if ((*value = header_value(line, len, "X-RateLimit-Limit")) != NULL)
		return XPLENTY_HEADER_RATELIMIT_LIMIT;
	if ((*value = header_value(line, len, "Link")) != NULL)
		return XPLENTY_HEADER_LINK;
	return XPLENTY_HEADER_OTHER;
}

/*
 * xplenty_parse_header_number
 *		A header's non-negative decimal value, or -1 if it is not one.
 */
long
xplenty_parse_header_number(const char *value)
{
	long		result = 0;

	if (*value < '0' || *value > '9')
		return -1;
	for (; *value >= '0' && *value <= '9'; value++)
	{
		if (result > (LONG_MAX - 9) / 10)
			return -1;
		result = result * 10 + (*value - '0');
	}
	return result;
}

/*
 * xplenty_answer_room
 *		Can len more bytes of body be appended to an answer of answer_len
 *		bytes in a buffer of answer_cap, and if the buffer must grow, to
 *		what size?
 *
 * The buffer keeps room for a terminating NUL.  It grows by doubling, so
 * that an answer arriving in many small pieces is copied few times, but
 * never past answer_limit + 1 bytes, nor past MAX_ANSWER_BUFFER: with
 * xplenty.max_response_size at its largest (1 GB), an answer of 1 GB would
 * need one byte more than that.
 */
XplentyAnswerRoom
xplenty_answer_room(size_t answer_len, size_t answer_cap, size_t answer_limit,
					size_t len, size_t *newcap)
{
	size_t		cap;

	answer_limit = Min(answer_limit, MAX_ANSWER_BUFFER - 1);
	if (len > answer_limit - answer_len)
		return XPLENTY_ANSWER_TOO_LARGE;
	if (answer_len + len + 1 <= answer_cap)
		return XPLENTY_ANSWER_FITS;

	cap = Max(answer_cap * 2, 1024);
	while (cap < answer_len + len + 1)
		cap *= 2;
	*newcap = Min(cap, answer_limit + 1);
	return XPLENTY_ANSWER_GROW;
}
