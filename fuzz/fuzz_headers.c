/*-------------------------------------------------------------------------
 *
 * fuzz_headers.c
 *	  libFuzzer target: the header lines of an API answer.
 *
 * The input is what a server sends before the body: lines ended by "\n"
 * (status lines, headers, garbage).  Each line goes, as its own buffer of
 * exactly its length (libcurl's header callback gives no NUL), through
 * src/http_headers.c the way collect_header in src/http_client.c drives
 * it, and the state a request would keep is checked after every line.
 *
 * fuzz/fuzz_headers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <errno.h>
#include <limits.h>

#include "http_headers.h"
#include "fuzz_check.h"

/* What collect_header keeps in an XplentyHttpRequest. */
typedef struct HeaderState
{
	long		ratelimit_limit;
	long		ratelimit_remaining;
	char	   *link_header;
} HeaderState;

/*
 * check_number
 *		The number read from a header value is -1, or exactly the decimal
 *		number the value starts with.
 */
static void
check_number(const char *value, long n)
{
	char	   *end;
	long		expect;

	CHECK(n >= -1);
	if (n == -1)
		return;
	CHECK(value[0] >= '0' && value[0] <= '9');
	errno = 0;
	expect = strtol(value, &end, 10);
	CHECK(errno == 0);
	CHECK(expect == n);
}

/*
 * feed_line
 *		One header line through the project's code, as collect_header does.
 */
static void
feed_line(HeaderState *state, const uint8_t *data, size_t len)
{
	char	   *piece = malloc(len > 0 ? len : 1);
	char		line[XPLENTY_HEADER_LINE_MAX];
	const char *value = (const char *) 1;	/* must be reset by the call */
	XplentyHeaderKind kind;

	memcpy(piece, data, len);
	kind = xplenty_classify_header(piece, len, line, &value);

	switch (kind)
	{
		case XPLENTY_HEADER_STATUS:
			CHECK(len >= 5 && memcmp(piece, "HTTP/", 5) == 0);
			CHECK(value == NULL);
			state->ratelimit_limit = -1;
			state->ratelimit_remaining = -1;
			free(state->link_header);
			state->link_header = NULL;
			break;
		case XPLENTY_HEADER_OTHER:
			CHECK(value == NULL);
			break;
		case XPLENTY_HEADER_RATELIMIT_REMAINING:
		case XPLENTY_HEADER_RATELIMIT_LIMIT:
		case XPLENTY_HEADER_LINK:
			{
				size_t		linelen;
				size_t		stripped;

				/* Only short lines are looked at, and cut at their end. */
				CHECK(len < XPLENTY_HEADER_LINE_MAX);
				linelen = strlen(line);
				CHECK(linelen <= len);
				CHECK(value != NULL);
				CHECK(value > line && value <= line + linelen);
				CHECK(value[-1] == ':' || value[-1] == ' ' ||
					  value[-1] == '\t');
				CHECK(*value != ' ' && *value != '\t');
				/* The line as sent, less its line end, up to any NUL. */
				stripped = len;
				while (stripped > 0 && (piece[stripped - 1] == '\r' ||
										piece[stripped - 1] == '\n'))
					stripped--;
				if (memchr(piece, '\0', stripped) == NULL)
					CHECK(linelen == stripped);
				else
					CHECK(linelen < stripped);
				CHECK(memcmp(line, piece, linelen) == 0);
				if (kind == XPLENTY_HEADER_LINK)
				{
					free(state->link_header);
					state->link_header = strdup(value);
				}
				else
				{
					long		n = xplenty_parse_header_number(value);

					check_number(value, n);
					if (kind == XPLENTY_HEADER_RATELIMIT_REMAINING)
						state->ratelimit_remaining = n;
					else
						state->ratelimit_limit = n;
				}
			}
			break;
		default:
			CHECK(!"unknown header kind");
	}
	free(piece);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HeaderState state = {-1, -1, NULL};
	size_t		pos = 0;

	while (pos < size)
	{
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t		len = nl ? (size_t) (nl - (data + pos)) + 1 : size - pos;

		feed_line(&state, data + pos, len);
		CHECK(state.ratelimit_limit >= -1);
		CHECK(state.ratelimit_remaining >= -1);
		pos += len;
	}

	/* The same header value, given as a NUL-terminated string of its own. */
	if (size < 64)
	{
		char		value[64];

		memcpy(value, data, size);
		value[size] = '\0';
		check_number(value, xplenty_parse_header_number(value));
	}

	free(state.link_header);
	return 0;
}
