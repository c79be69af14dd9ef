/*-------------------------------------------------------------------------
 *
 * fuzz_body.c
 *	  libFuzzer target: an answer's body arriving in pieces.
 *
 * collect_answer in src/http_client.c appends each piece libcurl hands its
 * write callback to a buffer that grows as xplenty_answer_room (in
 * src/http_headers.c) says, up to xplenty.max_response_size.  The input
 * chooses that setting and the sizes of the pieces:
 *
 *	  4 bytes	max_response_size in kB, taken into its range 1 .. 1048576
 *	  then, repeated, 4 bytes: a piece size (0 .. CURL_MAX_WRITE_SIZE, the
 *	  most libcurl ever passes at once) and how many pieces of that size
 *	  follow one another (1 .. 4096)
 *
 * up to MAX_CALLS calls in all: enough for 1.6 GB in pieces of 16 kB, more
 * than the largest setting lets through.
 *
 * Buffers up to 1 MB are really allocated and written, so that
 * AddressSanitizer sees every byte; past that only the sizes are followed.
 * Besides the arithmetic, a grown size must be one MemoryContextAlloc
 * accepts: without MCXT_ALLOC_HUGE it raises an ERROR for more than
 * MaxAllocSize bytes, and an ERROR inside a libcurl callback longjmps out
 * of libcurl.
 *
 * fuzz/fuzz_body.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "http_headers.h"
#include "fuzz_check.h"

/* From curl/curl.h; not included so that the target needs no libcurl. */
#define CURL_MAX_WRITE_SIZE 16384

/* From utils/memutils.h, which is for the server only. */
#define MAX_ALLOC_SIZE ((size_t) 0x3fffffff)

/* The most write callbacks one input makes. */
#define MAX_CALLS 100000

/* The largest buffer really allocated. */
#define REAL_LIMIT ((size_t) 1024 * 1024)

/* What collect_answer keeps in an XplentyHttpRequest. */
typedef struct Body
{
	char	   *answer;			/* NULL once past REAL_LIMIT */
	size_t		answer_len;
	size_t		answer_cap;
	size_t		answer_limit;
	bool		too_large;
} Body;

/*
 * append
 *		One call of the write callback; false when it refuses the piece.
 */
static bool
append(Body *body, const uint8_t *data, size_t len)
{
	size_t		newcap = 0;

	switch (xplenty_answer_room(body->answer_len, body->answer_cap,
								body->answer_limit, len, &newcap))
	{
		case XPLENTY_ANSWER_TOO_LARGE:
			/* Past the setting, or past what one buffer may hold. */
			CHECK(body->answer_len + len >
				  Min(body->answer_limit, MAX_ALLOC_SIZE - 1));
			body->too_large = true;
			return false;
		case XPLENTY_ANSWER_GROW:
			CHECK(newcap > body->answer_cap);
			CHECK(newcap >= body->answer_len + len + 1);
			CHECK(newcap <= body->answer_limit + 1);
			CHECK(newcap <= MAX_ALLOC_SIZE);
			if (newcap <= REAL_LIMIT)
			{
				char	   *grown = malloc(newcap);

				CHECK(grown != NULL);
				if (body->answer != NULL)
				{
					memcpy(grown, body->answer, body->answer_len);
					free(body->answer);
				}
				body->answer = grown;
			}
			else
			{
				free(body->answer);
				body->answer = NULL;
			}
			body->answer_cap = newcap;
			break;
		case XPLENTY_ANSWER_FITS:
			CHECK(body->answer_len + len + 1 <= body->answer_cap);
			break;
		default:
			CHECK(!"unknown answer room");
	}

	CHECK(body->answer_len + len <= body->answer_limit);
	if (body->answer != NULL)
	{
		memcpy(body->answer + body->answer_len, data, len);
		body->answer[body->answer_len + len] = '\0';
	}
	body->answer_len += len;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t piece[CURL_MAX_WRITE_SIZE];
	Body		body = {0};
	unsigned	calls = 0;
	uint32		kb;
	size_t		pos;

	if (size < 4)
		return 0;
	kb = (uint32) data[0] | (uint32) data[1] << 8 | (uint32) data[2] << 16 |
		(uint32) data[3] << 24;
	body.answer_limit = (size_t) (kb % (1024 * 1024) + 1) * 1024;

	for (pos = 4; pos + 4 <= size; pos += 4)
	{
		size_t		len = (data[pos] | data[pos + 1] << 8) %
			(CURL_MAX_WRITE_SIZE + 1);
		unsigned	times = ((data[pos + 2] | data[pos + 3] << 8) & 0xfff) + 1;
		bool		refused = false;

		/* The piece's bytes: the input itself, as far as it goes. */
		memset(piece, 'x', len);
		memcpy(piece, data + pos, Min(len, size - pos));
		for (unsigned i = 0; i < times && calls < MAX_CALLS; i++, calls++)
		{
			if (!append(&body, piece, len))
			{
				refused = true;
				break;
			}
		}
		if (refused)
			break;				/* libcurl ends the transfer */
	}

	/* What finish_request and xplenty_parse_answer then rely on. */
	CHECK(body.answer_len <= body.answer_limit);
	if (body.answer != NULL)
		CHECK(body.answer[body.answer_len] == '\0');
	free(body.answer);
	return 0;
}
