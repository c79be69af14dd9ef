/*-------------------------------------------------------------------------
 *
 * answer_jsonb.c
 *	  Build the jsonb of an ordinary answer in one pass (see quick_json.c).
 *
 * The values the quick reader hands on are noted, in the order they come,
 * in a flat list of nodes, and the list is then written out in jsonb's
 * on-disk form (utils/jsonb.h), as JsonbValueToJsonb would write the
 * JsonbValue tree that jsonb_in's own parse builds: numbers as numeric_in
 * reads them, objects' keys sorted by length and then bytes, of two
 * members with the same key the later one kept, an offset rather than a
 * length in every JB_OFFSET_STRIDE'th JEntry, and numbers and containers
 * aligned to four bytes from the start of the datum.  The result is the
 * same bytes that jsonb_in gives: sql/run_job.sql compares the two, and
 * TAP 095 byte for byte.
 *
 * Building the JsonbValue tree first, and having JsonbValueToJsonb walk it,
 * cost more than reading the text did.  The on-disk form is what
 * pg_upgrade keeps working across major versions, so writing it directly
 * depends on nothing that can change under us.
 *
 * Nothing here raises an ERROR for anything in an answer the quick reader
 * accepts: its numbers are short and have no exponent, so numeric_in can
 * hold them, and the answers given to it are small enough that no jsonb
 * size limit comes near.
 *
 * src/answer_jsonb.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "answer_jsonb.h"
#include "answer_text.h"
#include "quick_json.h"

/*
 * Larger answers are left to jsonb_in.  A thousand times what a job takes,
 * and far below where a jsonb could grow past its 256 MB limit.
 */
#define QUICK_ANSWER_MAX (1024 * 1024)

/* Objects with no more members than this have them sorted by insertion. */
#define INSERTION_SORT_MAX 32

/* Room first made for nodes: a job answer has some seventy. */
#define FIRST_NODE_ROOM 128

/* Integers of up to this many digits go to numeric without numeric_in. */
#define INT64_DIGITS_MAX 18

/*
 * What a node is.  An object's nodes are its members' keys (NODE_STRING)
 * and values, key then value; an array's are its elements.
 */
typedef enum NodeKind
{
	NODE_OBJECT,
	NODE_ARRAY,
	NODE_STRING,
	NODE_NUMBER,
	NODE_TRUE,
	NODE_FALSE,
	NODE_NULL
} NodeKind;

/*
 * One value (or key) of the answer.  A container's own nodes follow it,
 * and those of its containers follow them in turn, so that a container and
 * everything in it are size nodes in a row.
 */
typedef struct AnswerNode
{
	NodeKind	kind;
	int			count;			/* containers: members, or elements */
	int			size;			/* nodes from this one to its last, +1 */
	const char *text;			/* strings and numbers: in the answer */
	int			len;
} AnswerNode;

/* The nodes noted so far, and the containers not yet ended. */
typedef struct AnswerTree
{
	AnswerNode *nodes;
	int			count;
	int			capacity;
	int			depth;
	int			open[XPLENTY_QUICK_JSON_MAX_DEPTH];
} AnswerTree;

/* The datum being written, as a growing buffer. */
typedef struct JsonbWriter
{
	char	   *data;
	int			len;
	int			capacity;
} JsonbWriter;

/*
 * add_node
 *		Note one more node, of the given kind, in the container open at the
 *		moment (a key is a node of its object, not a member by itself).
 */
static AnswerNode *
add_node(AnswerTree *tree, NodeKind kind, bool is_member)
{
	AnswerNode *node;

	if (tree->count == tree->capacity)
	{
		tree->capacity *= 2;
		tree->nodes = repalloc(tree->nodes,
							   sizeof(AnswerNode) * tree->capacity);
	}
	if (is_member && tree->depth > 0)
		tree->nodes[tree->open[tree->depth - 1]].count++;
	node = &tree->nodes[tree->count++];
	node->kind = kind;
	node->count = 0;
	node->size = 1;
	node->text = NULL;
	node->len = 0;
	return node;
}

/*
 * note_begin
 *		The quick reader's handler for the start of an object or array.
 */
static void
note_begin(void *arg, bool is_object)
{
	AnswerTree *tree = (AnswerTree *) arg;

	add_node(tree, is_object ? NODE_OBJECT : NODE_ARRAY, true);
	tree->open[tree->depth++] = tree->count - 1;
}

/*
 * note_end
 *		The quick reader's handler for the end of an object or array.
 */
static void
note_end(void *arg, bool is_object)
{
	AnswerTree *tree = (AnswerTree *) arg;
	int			start = tree->open[--tree->depth];

	(void) is_object;
	tree->nodes[start].size = tree->count - start;
}

/*
 * note_key
 *		The quick reader's handler for an object member's key.
 */
static void
note_key(void *arg, const char *key, size_t len)
{
	AnswerNode *node = add_node((AnswerTree *) arg, NODE_STRING, false);

	node->text = key;
	node->len = (int) len;
}

/*
 * note_scalar
 *		The quick reader's handler for a string, number, boolean or null.
 */
static void
note_scalar(void *arg, XplentyJsonScalar kind, const char *text, size_t len)
{
	static const NodeKind kinds[] = {
		[XPLENTY_JSON_STRING] = NODE_STRING,
		[XPLENTY_JSON_NUMBER] = NODE_NUMBER,
		[XPLENTY_JSON_TRUE] = NODE_TRUE,
		[XPLENTY_JSON_FALSE] = NODE_FALSE,
		[XPLENTY_JSON_NULL] = NODE_NULL,
	};
	AnswerNode *node = add_node((AnswerTree *) arg, kinds[kind], true);

	node->text = text;
	node->len = (int) len;
}

static const XplentyJsonHandlers note_handlers = {
	.begin = note_begin,
	.end = note_end,
	.key = note_key,
	.scalar = note_scalar,
};

/*
 * reserve
 *		Make room for len more bytes at the end of the datum; return where
 *		they start.
 */
static inline int
reserve(JsonbWriter *writer, int len)
{
	int			offset = writer->len;

	if (writer->len + len > writer->capacity)
	{
		while (writer->len + len > writer->capacity)
			writer->capacity *= 2;
		writer->data = repalloc(writer->data, writer->capacity);
	}
	writer->len += len;
	return offset;
}

/*
 * append
 *		Add bytes at the end of the datum.
 */
static inline void
append(JsonbWriter *writer, const void *bytes, int len)
{
	int			offset = reserve(writer, len);

	memcpy(writer->data + offset, bytes, len);
}

/*
 * pad_to_int
 *		Add zero bytes up to a four-byte boundary.
 */
static inline void
pad_to_int(JsonbWriter *writer)
{
	int			padding = INTALIGN(writer->len) - writer->len;
	int			offset = reserve(writer, padding);

	memset(writer->data + offset, 0, padding);
}

/*
 * put_entry
 *		Store a child's JEntry in its container's reserved array.
 *
 * total is the length of the container's children so far, this one
 * included: every JB_OFFSET_STRIDE'th entry holds that end offset instead
 * of the child's own length, so that a reader need not add up them all.
 */
static inline void
put_entry(JsonbWriter *writer, int entries, int i, JEntry entry, int total)
{
	if (i % JB_OFFSET_STRIDE == 0)
		entry = (entry & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF;
	memcpy(writer->data + entries + sizeof(JEntry) * i, &entry,
		   sizeof(JEntry));
}

/*
 * compare_keys
 *		jsonb's order of object keys: shorter first, then by bytes.
 */
static inline int
compare_keys(const AnswerNode *a, const AnswerNode *b)
{
	if (a->len != b->len)
		return a->len > b->len ? 1 : -1;
	return memcmp(a->text, b->text, a->len);
}

/*
 * compare_members
 *		qsort_arg comparator of members, given as their keys' node numbers:
 *		by key, then in the order given, so that the sort is stable.
 */
static int
compare_members(const void *a, const void *b, void *arg)
{
	const AnswerNode *nodes = (const AnswerNode *) arg;
	int			ka = *(const int *) a;
	int			kb = *(const int *) b;
	int			res = compare_keys(&nodes[ka], &nodes[kb]);

	if (res != 0)
		return res;
	return ka < kb ? -1 : 1;
}

/*
 * sort_members
 *		Put an object's members, given as their keys' node numbers, in
 *		jsonb's key order, and of members with the same key keep only the
 *		last given, as jsonb_in does; return how many are kept.
 *
 * An API object has a few dozen members at most.  For those an insertion
 * sort with the comparison inline takes fewer steps than qsort_arg's calls
 * through a pointer.  Either sort keeps members with the same key in the
 * order given, so the last of them is the one kept.
 */
static int
sort_members(const AnswerNode *nodes, int *members, int n)
{
	int			kept = 0;

	if (n <= INSERTION_SORT_MAX)
	{
		for (int i = 1; i < n; i++)
		{
			int			key = members[i];
			int			j = i;

			/* Stop at an equal key: the sort must stay stable. */
			while (j > 0 && compare_keys(&nodes[members[j - 1]],
										 &nodes[key]) > 0)
			{
				members[j] = members[j - 1];
				j--;
			}
			members[j] = key;
		}
	}
	else
		qsort_arg(members, n, sizeof(int), compare_members,
				  (void *) nodes);

	for (int i = 0; i < n; i++)
	{
		if (i + 1 < n &&
			compare_keys(&nodes[members[i]], &nodes[members[i + 1]]) == 0)
			continue;
		members[kept++] = members[i];
	}
	return kept;
}

/*
 * number_to_numeric
 *		A number token as numeric, as numeric_in reads it.
 *
 * Most numbers in an answer are IDs and counts.  A whole number of a few
 * digits is made with int64_to_numeric, which gives the same numeric that
 * numeric_in would (both leave it in its normal form), without the seven
 * case-blind comparisons with "NaN", "Infinity" and the rest that
 * numeric_in makes before it reads a digit.
 */
static Numeric
number_to_numeric(const char *text, size_t len)
{
	char		token[XPLENTY_QUICK_JSON_MAX_NUMBER + 1];
	const char *p = text;
	const char *end = text + len;
	bool		negative = false;
	int64		value = 0;

	if (p < end && *p == '-')
	{
		negative = true;
		p++;
	}
	if (end - p <= INT64_DIGITS_MAX)
	{
		while (p < end && *p >= '0' && *p <= '9')
			value = value * 10 + (*p++ - '0');
		if (p == end)
			return int64_to_numeric(negative ? -value : value);
	}

	memcpy(token, text, len);
	token[len] = '\0';
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(token),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

static JEntry write_value(JsonbWriter *writer, const AnswerNode *nodes,
						  int at);

/*
 * write_object
 *		Write the object at node at: its header, the JEntries of its keys
 *		and then of its values, the keys' bytes and then the values'.
 */
static void
write_object(JsonbWriter *writer, const AnswerNode *nodes, int at)
{
	int			n = nodes[at].count;
	int			room[INSERTION_SORT_MAX];
	int		   *members = (n <= INSERTION_SORT_MAX) ? room :
		palloc(sizeof(int) * n);
	int			next = at + 1;
	uint32		header;
	int			entries;
	int			total = 0;

	for (int i = 0; i < n; i++)
	{
		members[i] = next;
		next += 1 + nodes[next + 1].size;
	}
	n = sort_members(nodes, members, n);

	header = (uint32) n | JB_FOBJECT;
	append(writer, &header, sizeof(header));
	entries = reserve(writer, sizeof(JEntry) * n * 2);
	for (int i = 0; i < n; i++)
	{
		const AnswerNode *key = &nodes[members[i]];

		append(writer, key->text, key->len);
		total += key->len;
		put_entry(writer, entries, i, JENTRY_ISSTRING | key->len, total);
	}
	for (int i = 0; i < n; i++)
	{
		JEntry		entry = write_value(writer, nodes, members[i] + 1);

		total += JBE_OFFLENFLD(entry);
		put_entry(writer, entries, n + i, entry, total);
	}
	if (members != room)
		pfree(members);
}

/*
 * write_array
 *		Write the array at node at: its header, its elements' JEntries,
 *		their bytes.
 */
static void
write_array(JsonbWriter *writer, const AnswerNode *nodes, int at)
{
	int			n = nodes[at].count;
	int			next = at + 1;
	uint32		header = (uint32) n | JB_FARRAY;
	int			entries;
	int			total = 0;

	append(writer, &header, sizeof(header));
	entries = reserve(writer, sizeof(JEntry) * n);
	for (int i = 0; i < n; i++)
	{
		JEntry		entry = write_value(writer, nodes, next);

		total += JBE_OFFLENFLD(entry);
		put_entry(writer, entries, i, entry, total);
		next += nodes[next].size;
	}
}

/*
 * write_value
 *		Write the bytes of the value at node at; return its JEntry, with
 *		its length (padding included) rather than an offset.
 */
static JEntry
write_value(JsonbWriter *writer, const AnswerNode *nodes, int at)
{
	const AnswerNode *node = &nodes[at];
	int			start = writer->len;

	switch (node->kind)
	{
		case NODE_OBJECT:
		case NODE_ARRAY:
			pad_to_int(writer);
			if (node->kind == NODE_OBJECT)
				write_object(writer, nodes, at);
			else
				write_array(writer, nodes, at);
			return JENTRY_ISCONTAINER | (writer->len - start);
		case NODE_STRING:
			append(writer, node->text, node->len);
			return JENTRY_ISSTRING | node->len;
		case NODE_NUMBER:
			{
				Numeric		number = number_to_numeric(node->text, node->len);

				pad_to_int(writer);
				append(writer, number, VARSIZE_ANY(number));
				pfree(number);
				return JENTRY_ISNUMERIC | (writer->len - start);
			}
		case NODE_TRUE:
			return JENTRY_ISBOOL_TRUE;
		case NODE_FALSE:
			return JENTRY_ISBOOL_FALSE;
		case NODE_NULL:
			return JENTRY_ISNULL;
	}
	pg_unreachable();
}

/*
 * xplenty_quick_answer_jsonb
 *		The answer as jsonb, read in one pass; or NULL if it is not an
 *		ordinary answer that the quick reader takes (then jsonb_in reads
 *		it, or says what is wrong with it).
 *
 * Only for a UTF8 database: in another, the answer has to be converted,
 * and the conversion can fail.
 */
Jsonb *
xplenty_quick_answer_jsonb(const char *answer, size_t len)
{
	AnswerTree *tree;
	JsonbWriter writer;
	char	   *text;
	Jsonb	   *result = NULL;

	if (len == 0 || len > QUICK_ANSWER_MAX ||
		GetDatabaseEncoding() != PG_UTF8 ||
		xplenty_check_answer_text(answer, len) != XPLENTY_ANSWER_TEXT_OK)
		return NULL;

	/* The reader decodes in place: give it a copy to write on. */
	text = palloc(len + 1);
	memcpy(text, answer, len);
	text[len] = '\0';

	tree = palloc(sizeof(AnswerTree));
	tree->capacity = FIRST_NODE_ROOM;
	tree->nodes = palloc(sizeof(AnswerNode) * tree->capacity);
	tree->count = 0;
	tree->depth = 0;
	if (xplenty_quick_json_read(text, len, &note_handlers, tree))
	{
		/* About the size of the text, most answers being mostly strings. */
		writer.capacity = (int) len + 256;
		writer.data = palloc(writer.capacity);
		writer.len = VARHDRSZ;
		(void) write_value(&writer, tree->nodes, 0);
		SET_VARSIZE(writer.data, writer.len);
		result = (Jsonb *) writer.data;
	}

	pfree(tree->nodes);
	pfree(tree);
	pfree(text);
	return result;
}
