/*-------------------------------------------------------------------------
 *
 * quick_json.c
 *	  A one-pass reader for the plain JSON that the API answers with.
 *
 * Every answer that succeeds is returned to SQL as jsonb, so reading it is
 * on the path of every call.  PostgreSQL 15's jsonb_in lexes the text,
 * copies each string one character at a time, and raises an ERROR for
 * what it cannot read, which is why answers were first checked with a
 * second full parse and then read inside a subtransaction (see answer.c).
 * Together that was the largest cost of a call, larger than the HTTP
 * request itself.
 *
 * This reader handles the answers that the API really sends: objects and
 * arrays of strings, plain numbers, true, false and null, not deeply
 * nested.  It decodes strings in place, so a string without escapes costs
 * no copy, and hands every value on to the caller's handlers as it goes.
 * What it does not accept (anything that is not such JSON, a number with
 * an exponent or of many digits, an escape jsonb cannot hold, deep
 * nesting) makes it return false, and the caller leaves the answer to
 * PostgreSQL's own parser, which either reads it or says exactly what is
 * wrong with it.  So this reader never has to be right about errors, only
 * about what it accepts: that must be JSON that jsonb_in reads into the
 * same values.  fuzz/fuzz_quick_json.c checks that, against PostgreSQL's
 * parser.
 *
 * The text must be valid UTF-8 without zero bytes (see answer_text.c),
 * and writable: escapes are decoded over the text itself.
 *
 * This file needs nothing of the server, so that the fuzz target can
 * build it as it is.
 *
 * src/quick_json.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "port/pg_bitutils.h"
#include "quick_json.h"

typedef struct QuickReader
{
	char	   *pos;			/* next character to read */
	char	   *end;			/* just past the text */
	const XplentyJsonHandlers *handlers;
	void	   *arg;
	int			depth;
} QuickReader;

static bool read_value(QuickReader *reader);

/*
 * The bytes that end a run of plain characters in a string: the closing
 * quote, a backslash, and the control characters, which JSON requires to
 * be escaped.  A table, for the last bytes of a text, looked at one by one.
 */
#define EIGHT_TRUE true, true, true, true, true, true, true, true
static const bool ends_plain_run[256] = {
	EIGHT_TRUE, EIGHT_TRUE, EIGHT_TRUE, EIGHT_TRUE, /* 0x00 to 0x1f */
	['"'] = true,
	['\\'] = true,
};
#undef EIGHT_TRUE

/*
 * word_is_plain
 *		Are all eight bytes of w plain string characters?
 *
 * The usual test for a zero byte in a word, (x - 0x01..01) & ~x & 0x80..80,
 * applied to w with the quote and the backslash bytes turned to zero, and
 * to w itself less 0x20 in each byte for the control characters.  It can
 * also flag a plain byte next to one that ends a run, never the other way
 * round: a flagged word is then read a byte at a time.
 */
static inline bool
word_is_plain(uint64 w)
{
	const uint64 ones = UINT64CONST(0x0101010101010101);
	const uint64 highs = UINT64CONST(0x8080808080808080);
	uint64		quote = w ^ (ones * '"');
	uint64		backslash = w ^ (ones * '\\');
	uint64		flagged;

	flagged = ((quote - ones) & ~quote) |
		((backslash - ones) & ~backslash) |
		((w - ones * 0x20) & ~w);
	return (flagged & highs) == 0;
}

/*
 * skip_plain
 *		Step over the plain string characters from src on; return where
 *		the first byte that ends a run is, or end.
 *
 * With SSE2 (every x86-64), sixteen bytes are looked at in a few
 * instructions, and the position of the first one that ends the run comes
 * from the comparison's mask, so that a string of an answer (an ID, a
 * status, a time, a URL) takes one to four steps.  Then, and without SSE2,
 * a word at a time, and the last bytes one by one.
 */
static inline char *
skip_plain(char *src, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i backslash = _mm_set1_epi8('\\');
	const __m128i last_control = _mm_set1_epi8(0x1F);

	while (end - src >= (ptrdiff_t) sizeof(__m128i))
	{
		__m128i		chunk = _mm_loadu_si128((const __m128i *) src);
		__m128i		stops;
		uint32		mask;

		/* A byte at most 0x1F, unsigned, is its own maximum with 0x1F. */
		stops = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote),
										  _mm_cmpeq_epi8(chunk, backslash)),
							 _mm_cmpeq_epi8(_mm_max_epu8(chunk, last_control),
											last_control));
		mask = (uint32) _mm_movemask_epi8(stops);
		if (mask != 0)
			return src + pg_rightmost_one_pos32(mask);
		src += sizeof(__m128i);
	}
#endif
	for (;;)
	{
		uint64		word;

		if (end - src < (ptrdiff_t) sizeof(word))
			break;
		memcpy(&word, src, sizeof(word));
		if (!word_is_plain(word))
			break;
		src += sizeof(word);
	}
	while (src < end && !ends_plain_run[(unsigned char) *src])
		src++;
	return src;
}

/*
 * skip_space
 *		Step over the whitespace JSON allows between tokens.
 */
static inline void
skip_space(QuickReader *reader)
{
	while (reader->pos < reader->end &&
		   (*reader->pos == ' ' || *reader->pos == '\n' ||
			*reader->pos == '\r' || *reader->pos == '\t'))
		reader->pos++;
}

/*
 * at_delimiter
 *		Does a number or a keyword end here?  PostgreSQL's lexer would read
 *		a letter or digit here as part of the same (then invalid) token, so
 *		only what can follow a value inside a container is accepted.
 */
static inline bool
at_delimiter(const QuickReader *reader)
{
	char		c;

	if (reader->pos >= reader->end)
		return true;
	c = *reader->pos;
	return c == ',' || c == ']' || c == '}' ||
		c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/*
 * read_hex4
 *		The value of the four hexadecimal digits at s, or -1 if there are
 *		not four before end.
 */
static int
read_hex4(const char *s, const char *end)
{
	int			value = 0;

	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		char		c = s[i];

		value <<= 4;
		if (c >= '0' && c <= '9')
			value |= c - '0';
		else if (c >= 'a' && c <= 'f')
			value |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			value |= c - 'A' + 10;
		else
			return -1;
	}
	return value;
}

/*
 * put_utf8
 *		Write a code point (not zero, not a surrogate) as UTF-8 at dst;
 *		return the bytes written, at most 4.
 */
static int
put_utf8(char *dst, unsigned int cp)
{
	unsigned char *d = (unsigned char *) dst;

	if (cp < 0x80)
	{
		d[0] = (unsigned char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		d[0] = (unsigned char) (0xC0 | (cp >> 6));
		d[1] = (unsigned char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		d[0] = (unsigned char) (0xE0 | (cp >> 12));
		d[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
		d[2] = (unsigned char) (0x80 | (cp & 0x3F));
		return 3;
	}
	d[0] = (unsigned char) (0xF0 | (cp >> 18));
	d[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
	d[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
	d[3] = (unsigned char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * read_unicode_escape
 *		Decode the \uXXXX escape (or surrogate pair of them) whose "u" is at
 *		*src, writing its UTF-8 at *dst; advance both.  False for what jsonb
 *		cannot hold or PostgreSQL's lexer refuses: \u0000, a lone or
 *		reversed surrogate, a bad hex digit.
 *
 * Decoding in place is safe: six characters of escape (twelve for a pair)
 * never decode to more than three bytes (four for a pair).
 */
static bool
read_unicode_escape(char **src, char **dst, const char *end)
{
	char	   *s = *src + 1;
	int			cp = read_hex4(s, end);

	if (cp <= 0)
		return false;
	s += 4;
	if (cp >= 0xDC00 && cp <= 0xDFFF)
		return false;
	if (cp >= 0xD800 && cp <= 0xDBFF)
	{
		int			low;

		if (end - s < 6 || s[0] != '\\' || s[1] != 'u')
			return false;
		low = read_hex4(s + 2, end);
		if (low < 0xDC00 || low > 0xDFFF)
			return false;
		s += 6;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
	}
	*dst += put_utf8(*dst, (unsigned int) cp);
	*src = s;
	return true;
}

/*
 * read_string
 *		Read the string whose opening quote is at the reader's position;
 *		decode it in place and say where it is.
 *
 * Until the first escape the decoded string is the text itself, so an
 * ordinary string is only scanned, never copied.
 */
static bool
read_string(QuickReader *reader, const char **value, size_t *len)
{
	char	   *start = reader->pos + 1;
	char	   *src = start;
	char	   *dst = start;
	const char *end = reader->end;

	for (;;)
	{
		char	   *run = src;
		size_t		n;

		src = skip_plain(src, end);
		n = src - run;
		if (dst != run)
			memmove(dst, run, n);
		dst += n;

		if (src >= end || (unsigned char) *src < 0x20)
			return false;		/* unterminated, or a raw control char */
		if (*src == '"')
			break;

		/* A backslash: one escape. */
		if (src + 1 >= end)
			return false;
		src++;
		switch (*src)
		{
			case '"':
			case '\\':
			case '/':
				*dst++ = *src++;
				break;
			case 'b':
				*dst++ = '\b';
				src++;
				break;
			case 'f':
				*dst++ = '\f';
				src++;
				break;
			case 'n':
				*dst++ = '\n';
				src++;
				break;
			case 'r':
				*dst++ = '\r';
				src++;
				break;
			case 't':
				*dst++ = '\t';
				src++;
				break;
			case 'u':
				if (!read_unicode_escape(&src, &dst, end))
					return false;
				break;
			default:
				return false;
		}
	}

	*value = start;
	*len = dst - start;
	reader->pos = src + 1;
	return true;
}

/*
 * read_number
 *		Read a number: -?(0|[1-9][0-9]*)(.[0-9]+)?, short, no exponent.
 */
static bool
read_number(QuickReader *reader)
{
	char	   *start = reader->pos;
	char	   *p = start;
	const char *end = reader->end;

	if (p < end && *p == '-')
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return false;
	if (*p == '0')
		p++;
	else
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	reader->pos = p;
	if (p - start > XPLENTY_QUICK_JSON_MAX_NUMBER || !at_delimiter(reader))
		return false;
	reader->handlers->scalar(reader->arg, XPLENTY_JSON_NUMBER, start,
							 p - start);
	return true;
}

/*
 * read_keyword
 *		Read true, false or null, whichever word is expected here.
 */
static bool
read_keyword(QuickReader *reader, const char *word, XplentyJsonScalar kind)
{
	size_t		n = strlen(word);

	if ((size_t) (reader->end - reader->pos) < n ||
		memcmp(reader->pos, word, n) != 0)
		return false;
	reader->pos += n;
	if (!at_delimiter(reader))
		return false;
	reader->handlers->scalar(reader->arg, kind, NULL, 0);
	return true;
}

/*
 * read_container
 *		Read the object or array whose opening bracket is at the reader's
 *		position.
 */
static bool
read_container(QuickReader *reader, bool is_object)
{
	char		close = is_object ? '}' : ']';

	if (++reader->depth > XPLENTY_QUICK_JSON_MAX_DEPTH)
		return false;
	reader->handlers->begin(reader->arg, is_object);
	reader->pos++;
	skip_space(reader);
	if (reader->pos < reader->end && *reader->pos == close)
		reader->pos++;
	else
	{
		for (;;)
		{
			if (is_object)
			{
				const char *key;
				size_t		len;

				if (reader->pos >= reader->end || *reader->pos != '"' ||
					!read_string(reader, &key, &len))
					return false;
				reader->handlers->key(reader->arg, key, len);
				skip_space(reader);
				if (reader->pos >= reader->end || *reader->pos != ':')
					return false;
				reader->pos++;
				skip_space(reader);
			}
			if (!read_value(reader))
				return false;
			skip_space(reader);
			if (reader->pos >= reader->end)
				return false;
			if (*reader->pos == close)
			{
				reader->pos++;
				break;
			}
			if (*reader->pos != ',')
				return false;
			reader->pos++;
			skip_space(reader);
		}
	}
	reader->handlers->end(reader->arg, is_object);
	reader->depth--;
	return true;
}

/*
 * read_value
 *		Read one value of any kind at the reader's position.
 */
static bool
read_value(QuickReader *reader)
{
	if (reader->pos >= reader->end)
		return false;
	switch (*reader->pos)
	{
		case '{':
			return read_container(reader, true);
		case '[':
			return read_container(reader, false);
		case '"':
			{
				const char *value;
				size_t		len;

				if (!read_string(reader, &value, &len))
					return false;
				reader->handlers->scalar(reader->arg, XPLENTY_JSON_STRING,
										 value, len);
				return true;
			}
		case 't':
			return read_keyword(reader, "true", XPLENTY_JSON_TRUE);
		case 'f':
			return read_keyword(reader, "false", XPLENTY_JSON_FALSE);
		case 'n':
			return read_keyword(reader, "null", XPLENTY_JSON_NULL);
		default:
			return read_number(reader);
	}
}

/*
 * xplenty_quick_json_read
 *		Read text that is one JSON object or array, handing each part on to
 *		the handlers; true if all of it was read, false if it is anything
 *		else, which is for PostgreSQL's parser to read or refuse.
 *
 * After false, the handlers may have seen part of the text, and the text
 * may have been partly decoded: the caller drops what it built and reads
 * the answer again from an untouched copy.
 */
bool
xplenty_quick_json_read(char *text, size_t len,
						const XplentyJsonHandlers *handlers, void *arg)
{
	QuickReader reader;

	reader.pos = text;
	reader.end = text + len;
	reader.handlers = handlers;
	reader.arg = arg;
	reader.depth = 0;

	skip_space(&reader);
	if (reader.pos >= reader.end ||
		(*reader.pos != '{' && *reader.pos != '['))
		return false;
	if (!read_container(&reader, *reader.pos == '{'))
		return false;
	skip_space(&reader);
	return reader.pos == reader.end;
}
