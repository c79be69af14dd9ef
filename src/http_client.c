/*-------------------------------------------------------------------------
 *
 * http_client.c
 *	  HTTP requests over libcurl, waited for on the process latch.
 *
 * A client is a libcurl multi handle plus what it takes to wait on it the
 * PostgreSQL way.  libcurl tells us, through its socket callback, which
 * sockets it wants to hear about; we keep those in an epoll set of our own,
 * and put that one descriptor into a WaitEventSet beside the process latch.
 * So a backend waiting for the API still answers at once to a cancel, a
 * statement_timeout or postmaster death, and the background worker can wait
 * for many answers and for new work with a single call, with no busy loop.
 *
 * The multi handle lives as long as the process, and with it libcurl's
 * connection cache: consecutive calls in a session reuse one kept-alive
 * connection instead of paying for a TCP and TLS handshake each time.
 *
 * Nothing in the libcurl callbacks may ereport: a longjmp out of libcurl
 * would leave it in an undefined state.  They only record what they saw,
 * and allocate with MCXT_ALLOC_NO_OOM.
 *
 * src/http_client.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "config.h"
#include "http_client.h"
#include "http_headers.h"

/* Idle connections older than this are not reused; see open_easy_handle. */
#define MAX_CONNECTION_AGE_SECONDS 30

/* How many socket events are taken from epoll at once. */
#define MAX_SOCKET_EVENTS 64

#define USER_AGENT_HEADER "User-Agent: xplenty-postgresql/1.0"
#define ACCEPT_HEADER "Accept: application/vnd.xplenty+json; version=2"

/* How many idle easy handles a client keeps for reuse. */
#define MAX_SPARE_HANDLES 64

/*
 * An easy handle, and what its options were last set up for.  A handle
 * set up for a request of the same kind (the same method, a body or none,
 * the same key and settings) is reused as it is: only the URL, if it
 * differs, and what points into the request are set again.  Otherwise it
 * would be curl_easy_reset and some thirty options again for every call,
 * which libcurl copies and checks one by one.
 */
typedef struct XplentyEasyHandle
{
	CURL	   *curl;
	bool		set_up;			/* the fields below describe its options */
	XplentyHttpMethod method;
	bool		has_body;
	uint64		settings_hash;	/* see settings_hash() */
	char	   *url;			/* the URL it has, in the client's context */
	struct curl_slist *headers; /* its request headers; see make_headers */
} XplentyEasyHandle;

struct XplentyHttpClient
{
	CURLM	   *multi;
	int			epoll_fd;		/* the sockets libcurl asked us to watch */
	WaitEventSet *wait_set;		/* latch, postmaster death, epoll_fd */
	long		timer_ms;		/* libcurl's wish: -1 none, else delay */
	TimestampTz timer_set_at;
	uint8	   *socket_state;	/* SOCKET_* flags, indexed by descriptor */
	int			socket_state_size;
	int			wanted_count;	/* sockets with SOCKET_WANTED */
	curl_socket_t last_wanted;	/* the socket last given SOCKET_WANTED */
	WaitEventSet *direct_set;	/* latch, postmaster death, direct_sock */
	curl_socket_t direct_sock;
	int			direct_sock_pos;	/* its position in direct_set */
	bool		direct_stale;	/* direct_sock has been closed */
	int			in_flight;
	dlist_head	finished;		/* requests done, not yet collected */
	List	   *spare_handles;	/* XplentyEasyHandles kept for reuse */
};

/*
 * What epoll_fd holds for each socket; see watch_socket.  SOCKET_OWN marks
 * a connection's socket, which open_socket made and close_socket closes.
 */
#define SOCKET_IN_EPOLL		0x01	/* registered in epoll_fd */
#define SOCKET_WANTED		0x02	/* libcurl wants to hear about it */
#define SOCKET_OWN			0x04	/* opened through open_socket */
#define SOCKET_READ			0x08	/* registered for EPOLLIN */
#define SOCKET_WRITE		0x10	/* registered for EPOLLOUT */

static bool curl_initialized = false;
static XplentyHttpClient *session_client = NULL;

static void initialize_curl(void);
static int	watch_socket(CURL *easy, curl_socket_t sock, int what,
						 void *client_arg, void *socket_arg);
static curl_socket_t open_socket(void *client_arg, curlsocktype purpose,
								 struct curl_sockaddr *address);
static int	close_socket(void *client_arg, curl_socket_t sock);
static int	set_timer(CURLM *multi, long timeout_ms, void *client_arg);
static size_t collect_answer(char *data, size_t size, size_t nmemb,
							 void *req_arg);
static size_t collect_header(char *data, size_t size, size_t nitems,
							 void *req_arg);
static int	before_sending(void *req_arg, char *primary_ip, char *local_ip,
						   int primary_port, int local_port);
static struct curl_slist *make_headers(bool json_body, const char *api_key);
static void free_headers(struct curl_slist *headers);
static XplentyEasyHandle *open_easy_handle(XplentyHttpClient *client,
											XplentyHttpRequest *req,
											const char *api_key);
static WaitEventSet *create_wait_set(MemoryContext context);
static void collect_finished(XplentyHttpClient *client);
static void release_easy_handle(XplentyHttpClient *client,
								XplentyEasyHandle *handle);
static long time_to_curl_timer(XplentyHttpClient *client);

/*
 * initialize_curl
 *		Initialize libcurl once per process.
 *
 * This runs at first use rather than in _PG_init, so that the postmaster,
 * which never sends a request, does not initialize OpenSSL on its behalf.
 */
static void
initialize_curl(void)
{
	if (curl_initialized)
		return;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_initialized = true;
}

/*
 * xplenty_http_client_create
 *		Make a client whose wait set and handles live in the given context.
 *
 * max_connections caps the connections open to the API at once; transfers
 * beyond it wait inside libcurl for a connection to come free.  Zero means
 * no cap.
 */
XplentyHttpClient *
xplenty_http_client_create(MemoryContext context, int max_connections)
{
	XplentyHttpClient *client;
	MemoryContext oldcontext;

	initialize_curl();

	oldcontext = MemoryContextSwitchTo(context);
	client = palloc0(sizeof(XplentyHttpClient));
	client->timer_ms = -1;
	client->last_wanted = CURL_SOCKET_BAD;
	client->direct_sock = CURL_SOCKET_BAD;
	dlist_init(&client->finished);

	client->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (client->epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll descriptor: %m")));

	client->multi = curl_multi_init();
	if (client->multi == NULL)
	{
		close(client->epoll_fd);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	}
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, set_timer);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
	xplenty_http_client_set_max_connections(client, max_connections);

	client->wait_set = create_wait_set(context);
	AddWaitEventToSet(client->wait_set, WL_SOCKET_READABLE,
					  client->epoll_fd, NULL, NULL);

	MemoryContextSwitchTo(oldcontext);
	return client;
}

/*
 * xplenty_http_client_set_max_connections
 *		Cap the connections a client opens at once (0: no cap), and keep as
 *		many idle ones for reuse.
 */
void
xplenty_http_client_set_max_connections(XplentyHttpClient *client,
										int max_connections)
{
	if (max_connections <= 0)
		return;
	curl_multi_setopt(client->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
					  (long) max_connections);
	curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS,
					  (long) max_connections);
}

/*
 * xplenty_http_session_client
 *		The client that SQL-callable functions of this backend share.
 */
XplentyHttpClient *
xplenty_http_session_client(void)
{
	if (session_client == NULL)
		session_client = xplenty_http_client_create(TopMemoryContext, 0);
	return session_client;
}

/*
 * track_socket
 *		Make room to record the state of a socket; false if there is none.
 *
 * Runs in libcurl's callbacks, so it must not ereport: it allocates with
 * MCXT_ALLOC_NO_OOM, and libcurl fails the transfer when it gets false.
 */
static bool
track_socket(XplentyHttpClient *client, curl_socket_t sock)
{
	int			size;
	uint8	   *grown;

	if (sock < 0)
		return false;
	if (sock < client->socket_state_size)
		return true;
	size = Max(64, client->socket_state_size);
	while (size <= sock)
		size *= 2;
	grown = MemoryContextAllocExtended(GetMemoryChunkContext(client), size,
									   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
	if (grown == NULL)
		return false;
	if (client->socket_state != NULL)
	{
		memcpy(grown, client->socket_state, client->socket_state_size);
		pfree(client->socket_state);
	}
	client->socket_state = grown;
	client->socket_state_size = size;
	return true;
}

/*
 * set_socket_state
 *		Record a socket's new state, and keep count of the wanted ones.
 */
static void
set_socket_state(XplentyHttpClient *client, curl_socket_t sock, uint8 state)
{
	uint8		old = client->socket_state[sock];

	if ((old & SOCKET_WANTED) && !(state & SOCKET_WANTED))
		client->wanted_count--;
	else if (!(old & SOCKET_WANTED) && (state & SOCKET_WANTED))
	{
		client->wanted_count++;
		client->last_wanted = sock;
	}
	client->socket_state[sock] = state;
}

/*
 * forget_socket
 *		Take a socket out of our epoll set.
 */
static void
forget_socket(XplentyHttpClient *client, curl_socket_t sock)
{
	uint8		state = client->socket_state[sock];

	/* The socket may already be closed, which removed it anyway. */
	if (state & SOCKET_IN_EPOLL)
		(void) epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, sock, NULL);
	set_socket_state(client, sock, state & SOCKET_OWN);
}

/*
 * watch_socket
 *		libcurl's socket callback: mirror its wishes into our epoll set.
 *
 * libcurl gives up interest in a kept-alive connection's socket at the end
 * of every transfer and takes it up again at the start of the next.  With
 * a request at a time on one connection, taking it out of epoll and back
 * each time would be three of the call's nine system calls.  So a
 * connection's socket (SOCKET_OWN) stays registered while libcurl does not
 * want it, and comes out only if it has an event nobody wants (the server
 * closing an idle connection: see xplenty_http_wait) or when it is closed
 * (close_socket).  Other sockets, such as the threaded resolver's, which
 * libcurl closes itself, come out at once.
 */
static int
watch_socket(CURL *easy, curl_socket_t sock, int what, void *client_arg,
			 void *socket_arg)
{
	XplentyHttpClient *client = (XplentyHttpClient *) client_arg;
	struct epoll_event ev;
	uint8	   *state;
	uint8		events = 0;
	int			op;

	(void) easy;
	(void) socket_arg;
	if (what == CURL_POLL_REMOVE)
	{
		/* A socket never recorded was never added to epoll. */
		if (sock < 0 || sock >= client->socket_state_size)
			return 0;
		state = &client->socket_state[sock];
		if ((*state & SOCKET_OWN) && (*state & SOCKET_IN_EPOLL))
			set_socket_state(client, sock, *state & ~SOCKET_WANTED);
		else
			forget_socket(client, sock);
		return 0;
	}

	if (!track_socket(client, sock))
		return -1;
	state = &client->socket_state[sock];

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = sock;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
	{
		ev.events |= EPOLLIN;
		events |= SOCKET_READ;
	}
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
	{
		ev.events |= EPOLLOUT;
		events |= SOCKET_WRITE;
	}

	if ((*state & SOCKET_IN_EPOLL) &&
		(*state & (SOCKET_READ | SOCKET_WRITE)) == events)
	{
		set_socket_state(client, sock, *state | SOCKET_WANTED);
		return 0;
	}

	/* Either may fail if the socket was closed behind our back. */
	op = (*state & SOCKET_IN_EPOLL) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(client->epoll_fd, op, sock, &ev) != 0)
	{
		if (op == EPOLL_CTL_MOD && errno == ENOENT)
			op = EPOLL_CTL_ADD;
		else if (op == EPOLL_CTL_ADD && errno == EEXIST)
			op = EPOLL_CTL_MOD;
		else
			return -1;
		if (epoll_ctl(client->epoll_fd, op, sock, &ev) != 0)
			return -1;
	}
	set_socket_state(client, sock, (*state & SOCKET_OWN) | SOCKET_IN_EPOLL |
					 SOCKET_WANTED | events);
	return 0;
}

/*
 * open_socket
 *		libcurl's open-socket callback: make a connection's socket, as
 *		libcurl would, and note it as one that close_socket will close.
 */
static curl_socket_t
open_socket(void *client_arg, curlsocktype purpose,
			struct curl_sockaddr *address)
{
	XplentyHttpClient *client = (XplentyHttpClient *) client_arg;
	curl_socket_t sock;

	(void) purpose;
	sock = socket(address->family, address->socktype, address->protocol);
	if (sock == CURL_SOCKET_BAD)
		return sock;
	if (!track_socket(client, sock))
	{
		close(sock);
		return CURL_SOCKET_BAD;
	}
	/* A socket of that number that was closed left nothing behind. */
	set_socket_state(client, sock, SOCKET_OWN);
	return sock;
}

/*
 * close_socket
 *		libcurl's close-socket callback: take the socket out of our epoll
 *		set, forget it, and close it.
 */
static int
close_socket(void *client_arg, curl_socket_t sock)
{
	XplentyHttpClient *client = (XplentyHttpClient *) client_arg;

	if (sock >= 0 && sock < client->socket_state_size)
	{
		forget_socket(client, sock);
		set_socket_state(client, sock, 0);
	}
	if (sock == client->direct_sock)
		client->direct_stale = true;
	return close(sock);
}

/*
 * set_timer
 *		libcurl's timer callback: remember when it next wants to run.
 */
static int
set_timer(CURLM *multi, long timeout_ms, void *client_arg)
{
	XplentyHttpClient *client = (XplentyHttpClient *) client_arg;

	(void) multi;
	client->timer_ms = timeout_ms;
	client->timer_set_at = GetCurrentTimestamp();
	return 0;
}

/*
 * time_to_curl_timer
 *		Milliseconds until libcurl's timer expires, 0 if it has, -1 if none.
 */
static long
time_to_curl_timer(XplentyHttpClient *client)
{
	long		elapsed;

	if (client->timer_ms < 0)
		return -1;
	if (client->timer_ms == 0)
		return 0;
	elapsed = TimestampDifferenceMilliseconds(client->timer_set_at,
											  GetCurrentTimestamp());
	return Max(client->timer_ms - elapsed, 0);
}

/*
 * collect_answer
 *		libcurl's write callback: append a piece of the answer's body.
 *
 * Refuses, by returning a short count, an answer that would pass
 * answer_limit or that memory cannot be had for; libcurl then ends the
 * transfer with CURLE_WRITE_ERROR and too_large tells the two apart.
 */
static size_t
collect_answer(char *data, size_t size, size_t nmemb, void *req_arg)
{
	XplentyHttpRequest *req = (XplentyHttpRequest *) req_arg;
	size_t		len = size * nmemb;
	size_t		newcap;

	switch (xplenty_answer_room(req->answer_len, req->answer_cap,
								req->answer_limit, len, &newcap))
	{
		case XPLENTY_ANSWER_TOO_LARGE:
			req->too_large = true;
			return 0;
		case XPLENTY_ANSWER_GROW:
			{
				char	   *grown;

				grown = MemoryContextAllocExtended(req->context, newcap,
												   MCXT_ALLOC_NO_OOM);
				if (grown == NULL)
					return 0;
				if (req->answer != NULL)
				{
					memcpy(grown, req->answer, req->answer_len);
					pfree(req->answer);
				}
				req->answer = grown;
				req->answer_cap = newcap;
			}
			break;
		case XPLENTY_ANSWER_FITS:
			break;
	}

	memcpy(req->answer + req->answer_len, data, len);
	req->answer_len += len;
	req->answer[req->answer_len] = '\0';
	return len;
}

/*
 * collect_header
 *		libcurl's header callback: keep the headers the callers act on.
 */
static size_t
collect_header(char *data, size_t size, size_t nitems, void *req_arg)
{
	XplentyHttpRequest *req = (XplentyHttpRequest *) req_arg;
	size_t		total = size * nitems;
	char		line[XPLENTY_HEADER_LINE_MAX];
	const char *value;

	switch (xplenty_classify_header(data, total, line, &value))
	{
		case XPLENTY_HEADER_STATUS:
			req->ratelimit_limit = -1;
			req->ratelimit_remaining = -1;
			req->link_header = NULL;
			break;
		case XPLENTY_HEADER_RATELIMIT_REMAINING:
			req->ratelimit_remaining = xplenty_parse_header_number(value);
			break;
		case XPLENTY_HEADER_RATELIMIT_LIMIT:
			req->ratelimit_limit = xplenty_parse_header_number(value);
			break;
		case XPLENTY_HEADER_LINK:
			{
				size_t		vlen = strlen(value) + 1;
				char	   *copy;

				copy = MemoryContextAllocExtended(req->context, vlen,
												  MCXT_ALLOC_NO_OOM);
				if (copy != NULL)
					memcpy(copy, value, vlen);
				req->link_header = copy;
			}
			break;
		case XPLENTY_HEADER_OTHER:
			break;
	}
	return total;
}

/*
 * before_sending
 *		libcurl's pre-request callback: count the times the request goes out.
 *
 * libcurl silently sends a request again on a fresh connection when a
 * reused one dies before any answer arrives.  For POST /jobs that is how a
 * paid job gets started twice: the API may have read the first copy and
 * created the job before the connection broke.  So a request marked
 * single_attempt is stopped here before a second copy leaves, and the
 * caller learns it may have been sent.  That this callback ran at all is
 * also how we know that a failure came after the request began to leave.
 */
static int
before_sending(void *req_arg, char *primary_ip, char *local_ip,
			   int primary_port, int local_port)
{
	XplentyHttpRequest *req = (XplentyHttpRequest *) req_arg;

	(void) primary_ip;
	(void) local_ip;
	(void) primary_port;
	(void) local_port;
	req->attempts++;
	if (req->attempts > 1 && req->single_attempt)
		return CURL_PREREQFUNC_ABORT;
	return CURL_PREREQFUNC_OK;
}

/*
 * hash_setting
 *		Fold a string setting (NULL or empty: none) into a hash.
 */
static uint64
hash_setting(uint64 hash, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return hash_combine64(hash, 0);
	return hash_combine64(hash,
						  hash_bytes_extended((const unsigned char *) value,
											  (int) strlen(value), 0));
}

/*
 * settings_hash
 *		A hash of everything set_up_easy_handle takes from the settings and
 *		the key, to tell whether a handle's options are still right.
 *
 * The key goes in only as this hash, so that no copy of it is kept.
 */
static uint64
settings_hash(const XplentyHttpRequest *req, const char *api_key)
{
	uint64		hash = 0;

	hash = hash_setting(hash, api_key);
	hash = hash_setting(hash, xplenty_ca_file);
	hash = hash_setting(hash, xplenty_proxy);
	hash = hash_combine64(hash, (uint64) xplenty_connect_timeout_ms);
	hash = hash_combine64(hash, (uint64) xplenty_request_timeout_ms);
	hash = hash_combine64(hash, (uint64) xplenty_tls_verify);
	hash = hash_combine64(hash, (uint64) req->answer_limit);
	return hash;
}

/*
 * append_header
 *		Add a line to a header list; if memory runs out, free the list and
 *		return NULL.  A NULL list stays NULL.
 */
static struct curl_slist *
append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *longer;

	if (list == NULL)
		return NULL;
	longer = curl_slist_append(list, line);
	if (longer == NULL)
		free_headers(list);
	return longer;
}

/*
 * free_headers
 *		Free a list from make_headers, first wiping what it says, which
 *		includes the key.
 */
static void
free_headers(struct curl_slist *headers)
{
	for (struct curl_slist *item = headers; item != NULL; item = item->next)
		explicit_bzero(item->data, strlen(item->data));
	curl_slist_free_all(headers);
}

/*
 * make_headers
 *		The header list of a request with or without a JSON body, made
 *		with malloc as libcurl's lists are; NULL if memory ran out.
 *
 * Besides Accept (and, for a body, Content-Type), it holds User-Agent and
 * the Basic authorization, rather than giving libcurl the key as a user
 * name: libcurl formats those two again for every request, base64 and all,
 * through a printf of its own, which was 7 % of the instructions of a Run
 * Job call.
 *
 * Authorization as a header of ours goes only to the API (libcurl keeps
 * the headers it is given off a proxy's CONNECT), and we follow no
 * redirect that could carry it elsewhere.  "Expect:" with no value keeps
 * libcurl from sending "Expect: 100-continue" and waiting for an interim
 * answer before a large body.
 */
static struct curl_slist *
make_headers(bool json_body, const char *api_key)
{
	const char *prefix = "Authorization: Basic ";
	int			user_len = strlen(api_key) + 1;
	char	   *user;
	char	   *line;
	int			encoded_len;
	struct curl_slist *list;

	/* The user is the key, with an empty password: "key:". */
	user = palloc(user_len + 1);
	snprintf(user, user_len + 1, "%s:", api_key);
	line = palloc(strlen(prefix) + pg_b64_enc_len(user_len) + 1);
	strcpy(line, prefix);
	encoded_len = pg_b64_encode(user, user_len, line + strlen(prefix),
								pg_b64_enc_len(user_len));
	explicit_bzero(user, user_len);
	pfree(user);
	if (encoded_len < 0)
	{
		pfree(line);
		return NULL;
	}
	line[strlen(prefix) + encoded_len] = '\0';

	list = curl_slist_append(NULL, ACCEPT_HEADER);
	if (json_body)
	{
		list = append_header(list, "Content-Type: application/json");
		list = append_header(list, "Expect:");
	}
	list = append_header(list, USER_AGENT_HEADER);
	list = append_header(list, line);
	explicit_bzero(line, strlen(line));
	pfree(line);
	return list;
}

/*
 * set_up_easy_handle
 *		Give a fresh (or reset) easy handle every option that a request of
 *		this kind needs, but for the URL and what points into the request.
 *
 * The headers, the key's among them, are the handle's own list from
 * make_headers.  MAX_CONNECTION_AGE_SECONDS is shorter than the idle timeout
 * of common servers and load balancers (60 s and more), so that we seldom
 * send on a connection the other end is just closing.
 */
static void
set_up_easy_handle(XplentyHttpClient *client, CURL *easy,
				   const XplentyHttpRequest *req, struct curl_slist *headers)
{
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
					 (long) xplenty_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
					 (long) xplenty_request_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN,
					 (long) MAX_CONNECTION_AGE_SECONDS);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER,
					 xplenty_tls_verify ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST,
					 xplenty_tls_verify ? 2L : 0L);
	if (xplenty_ca_file != NULL && xplenty_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, xplenty_ca_file);
	curl_easy_setopt(easy, CURLOPT_PROXY,
					 xplenty_proxy != NULL ? xplenty_proxy : "");
	/*
	 * The proxy is xplenty.proxy's alone: without this, libcurl would read
	 * no_proxy from the environment, for every request, and could go
	 * around the proxy because of it.
	 */
	curl_easy_setopt(easy, CURLOPT_NOPROXY, "");
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
					 (curl_off_t) req->answer_limit);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_answer);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, collect_header);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, before_sending);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, client);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, client);

	switch (req->method)
	{
		case XPLENTY_HTTP_GET:
			curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
			break;
		case XPLENTY_HTTP_POST:
			curl_easy_setopt(easy, CURLOPT_POST, 1L);
			break;
		case XPLENTY_HTTP_DELETE:
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "DELETE");
			break;
	}
	if (req->body == NULL && req->method == XPLENTY_HTTP_POST)
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
	}
}

/*
 * open_easy_handle
 *		Take a spare easy handle or make one, and set it up for the request.
 */
static XplentyEasyHandle *
open_easy_handle(XplentyHttpClient *client, XplentyHttpRequest *req,
				 const char *api_key)
{
	XplentyEasyHandle *handle;
	uint64		hash = settings_hash(req, api_key);
	bool		has_body = (req->body != NULL);

	if (client->spare_handles != NIL)
	{
		handle = (XplentyEasyHandle *) llast(client->spare_handles);
		client->spare_handles = list_delete_last(client->spare_handles);
	}
	else
	{
		CURL	   *curl = curl_easy_init();

		if (curl == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
		handle = MemoryContextAllocZero(GetMemoryChunkContext(client),
										sizeof(XplentyEasyHandle));
		handle->curl = curl;
	}

	if (!handle->set_up || handle->method != req->method ||
		handle->has_body != has_body || handle->settings_hash != hash)
	{
		struct curl_slist *headers;

		headers = make_headers(has_body || req->method == XPLENTY_HTTP_POST,
							   api_key);
		if (headers == NULL)
		{
			release_easy_handle(client, handle);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		if (handle->set_up)
			curl_easy_reset(handle->curl);
		free_headers(handle->headers);
		handle->headers = headers;
		if (handle->url != NULL)
			pfree(handle->url);
		handle->url = NULL;
		set_up_easy_handle(client, handle->curl, req, headers);
		handle->set_up = true;
		handle->method = req->method;
		handle->has_body = has_body;
		handle->settings_hash = hash;
	}

	if (handle->url == NULL || strcmp(handle->url, req->url) != 0)
	{
		if (handle->url != NULL)
			pfree(handle->url);
		handle->url = NULL;
		if (curl_easy_setopt(handle->curl, CURLOPT_URL, req->url) != CURLE_OK)
		{
			release_easy_handle(client, handle);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		handle->url = MemoryContextStrdup(GetMemoryChunkContext(client),
										  req->url);
	}

	/* What points into this request. */
	curl_easy_setopt(handle->curl, CURLOPT_ERRORBUFFER, req->curl_error);
	curl_easy_setopt(handle->curl, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(handle->curl, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(handle->curl, CURLOPT_PREREQDATA, req);
	curl_easy_setopt(handle->curl, CURLOPT_PRIVATE, req);
	if (has_body)
	{
		curl_easy_setopt(handle->curl, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) req->body_len);
		curl_easy_setopt(handle->curl, CURLOPT_POSTFIELDS, req->body);
	}

	return handle;
}

/*
 * xplenty_http_start
 *		Begin a request on the client; it progresses in xplenty_http_wait.
 *
 * The answer is collected in CurrentMemoryContext, which must outlive the
 * request.  req->body must stay valid until the request has finished.
 */
void
xplenty_http_start(XplentyHttpClient *client, XplentyHttpRequest *req,
				   const char *api_key)
{
	CURLMcode	rc;

	req->outcome = XPLENTY_HTTP_PENDING;
	req->status = 0;
	req->curl_code = CURLE_OK;
	req->curl_error[0] = '\0';
	req->attempts = 0;
	req->answer = NULL;
	req->answer_len = 0;
	req->answer_cap = 0;
	req->answer_limit = (size_t) xplenty_max_response_size_kb * 1024;
	req->retry_after = -1;
	req->ratelimit_limit = -1;
	req->ratelimit_remaining = -1;
	req->link_header = NULL;
	req->elapsed = 0;
	req->context = CurrentMemoryContext;
	req->too_large = false;
	req->on_finished_list = false;

	req->handle = open_easy_handle(client, req, api_key);
	rc = curl_multi_add_handle(client->multi, req->handle->curl);
	if (rc != CURLM_OK)
	{
		release_easy_handle(client, req->handle);
		req->handle = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request: %s",
						curl_multi_strerror(rc))));
	}
	client->in_flight++;
}

/*
 * release_easy_handle
 *		Keep an easy handle for the next request, or free it.
 */
static void
release_easy_handle(XplentyHttpClient *client, XplentyEasyHandle *handle)
{
	MemoryContext oldcontext;

	if (list_length(client->spare_handles) >= MAX_SPARE_HANDLES)
	{
		curl_easy_cleanup(handle->curl);
		free_headers(handle->headers);
		if (handle->url != NULL)
			pfree(handle->url);
		pfree(handle);
		return;
	}
	oldcontext = MemoryContextSwitchTo(GetMemoryChunkContext(client));
	client->spare_handles = lappend(client->spare_handles, handle);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * finish_request
 *		Record how a transfer ended and take it off the multi handle.
 */
static void
finish_request(XplentyHttpClient *client, XplentyHttpRequest *req,
			   CURLcode result)
{
	curl_off_t	total_us = 0;
	curl_off_t	retry_after = 0;

	CURL	   *easy = req->handle->curl;

	req->curl_code = result;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
	req->elapsed = (double) total_us / 1000000.0;
	if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER,
						  &retry_after) == CURLE_OK && retry_after > 0)
		req->retry_after = (long) Min(retry_after, (curl_off_t) 86400);

	if (result == CURLE_OK)
		req->outcome = XPLENTY_HTTP_ANSWERED;
	else if (req->too_large || result == CURLE_FILESIZE_EXCEEDED)
		req->outcome = XPLENTY_HTTP_TOO_LARGE;
	else if (req->attempts == 0)
		req->outcome = XPLENTY_HTTP_NOT_SENT;
	else
		req->outcome = XPLENTY_HTTP_MAYBE_SENT;

	if (req->answer == NULL)
	{
		req->answer = MemoryContextAllocZero(req->context, 1);
		req->answer_len = 0;
	}

	curl_multi_remove_handle(client->multi, easy);
	release_easy_handle(client, req->handle);
	req->handle = NULL;
	client->in_flight--;
	dlist_push_tail(&client->finished, &req->node);
	req->on_finished_list = true;
}

/*
 * collect_finished
 *		Move every transfer libcurl reports as done to the finished list.
 */
static void
collect_finished(XplentyHttpClient *client)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
	{
		XplentyHttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		finish_request(client, req, msg->data.result);
	}
}

/*
 * the_wanted_socket
 *		The socket libcurl wants to hear about, if there is just one, else
 *		CURL_SOCKET_BAD.
 */
static curl_socket_t
the_wanted_socket(XplentyHttpClient *client)
{
	if (client->wanted_count != 1)
		return CURL_SOCKET_BAD;
	if (client->last_wanted != CURL_SOCKET_BAD &&
		(client->socket_state[client->last_wanted] & SOCKET_WANTED))
		return client->last_wanted;
	for (int sock = 0; sock < client->socket_state_size; sock++)
	{
		if (client->socket_state[sock] & SOCKET_WANTED)
			return sock;
	}
	return CURL_SOCKET_BAD;
}

/*
 * create_wait_set
 *		A wait set with room for one socket more, holding the latch and,
 *		under a postmaster, its death.
 *
 * A single-user backend has no postmaster to watch, and AddWaitEventToSet
 * would register an invalid descriptor for it, so it is left out there.
 */
static WaitEventSet *
create_wait_set(MemoryContext context)
{
	WaitEventSet *set = CreateWaitEventSet(context, 3);

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
						  NULL, NULL);
	return set;
}

/*
 * choose_wait_set
 *		The wait set to wait on: one that holds the socket itself when
 *		libcurl wants only one of ours, else the one that holds epoll_fd.
 *
 * Waiting on epoll_fd through the wait set takes two epoll_wait calls per
 * wake-up, and the kernel's wake-up goes through two epoll instances.  A
 * synchronous call has one connection, waited on for every answer, so a
 * wait set with that socket in it is kept, and made again only when
 * libcurl wants another socket or closes that one.  Only a connection's
 * socket, whose closing close_socket sees, is waited on so.
 */
static WaitEventSet *
choose_wait_set(XplentyHttpClient *client, bool *direct)
{
	curl_socket_t sock = the_wanted_socket(client);
	uint8		state;
	uint32		events;

	*direct = false;
	if (client->direct_set != NULL &&
		(client->direct_stale ||
		 (sock != CURL_SOCKET_BAD && sock != client->direct_sock)))
	{
		FreeWaitEventSet(client->direct_set);
		client->direct_set = NULL;
		client->direct_sock = CURL_SOCKET_BAD;
	}
	if (sock == CURL_SOCKET_BAD)
		return client->wait_set;
	state = client->socket_state[sock];
	if (!(state & SOCKET_OWN))
		return client->wait_set;

	events = ((state & SOCKET_READ) ? WL_SOCKET_READABLE : 0) |
		((state & SOCKET_WRITE) ? WL_SOCKET_WRITEABLE : 0);
	if (client->direct_set == NULL)
	{
		client->direct_set = create_wait_set(GetMemoryChunkContext(client));
		client->direct_sock_pos = AddWaitEventToSet(client->direct_set,
													events, sock, NULL, NULL);
		client->direct_sock = sock;
		client->direct_stale = false;
	}
	else
	{
		/* It returns at once if the events are those the set has. */
		ModifyWaitEvent(client->direct_set, client->direct_sock_pos, events,
						NULL);
	}
	*direct = true;
	return client->direct_set;
}

/*
 * xplenty_http_wait
 *		Wait until a transfer makes progress, the latch is set, or timeout_ms
 *		(-1: no limit) passes, and let libcurl do what it can.
 *
 * Returns XPLENTY_WAKE_LATCH if the latch was set (it has been reset; the
 * caller checks why), and XPLENTY_WAKE_TIMEOUT if timeout_ms ran out.
 * Finished requests are then to be had from xplenty_http_next_finished.
 */
int
xplenty_http_wait(XplentyHttpClient *client, long timeout_ms,
				  uint32 wait_event_info)
{
	WaitEvent	events[3];
	WaitEventSet *wait_set;
	bool		direct = false;
	long		curl_wait;
	long		wait_ms;
	int			nevents;
	int			running;
	int			result = 0;
	bool		curl_timer_due;

	if (!dlist_is_empty(&client->finished))
		return 0;

	curl_wait = time_to_curl_timer(client);
	if (curl_wait >= 0 && (timeout_ms < 0 || curl_wait <= timeout_ms))
		wait_ms = curl_wait;
	else
		wait_ms = timeout_ms;

	/*
	 * libcurl has work to do now (it asks for a timeout of 0 right after a
	 * transfer is added): let it, without a round trip through the wait
	 * set.  The latch is looked at on the next call.
	 */
	if (curl_wait == 0)
		nevents = 0;
	else
	{
		wait_set = choose_wait_set(client, &direct);
		nevents = WaitEventSetWait(wait_set, wait_ms, events,
								   lengthof(events), wait_event_info);
	}

	for (int i = 0; i < nevents; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			result |= XPLENTY_WAKE_LATCH;
		}
		else if (direct && (events[i].events & WL_SOCKET_MASK))
		{
			int			flags = 0;

			if (events[i].events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (events[i].events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			curl_multi_socket_action(client->multi, events[i].fd, flags,
									 &running);
		}
		else if (events[i].events & WL_SOCKET_READABLE)
		{
			struct epoll_event ready[MAX_SOCKET_EVENTS];
			int			nready;

			nready = epoll_wait(client->epoll_fd, ready, MAX_SOCKET_EVENTS, 0);
			for (int j = 0; j < nready; j++)
			{
				int			sock = ready[j].data.fd;
				int			flags = 0;

				/* An idle connection's socket, left in: see watch_socket. */
				if (!(client->socket_state[sock] & SOCKET_WANTED))
				{
					forget_socket(client, sock);
					continue;
				}

				if (ready[j].events & EPOLLIN)
					flags |= CURL_CSELECT_IN;
				if (ready[j].events & EPOLLOUT)
					flags |= CURL_CSELECT_OUT;
				if (ready[j].events & (EPOLLERR | EPOLLHUP))
					flags |= CURL_CSELECT_ERR;
				curl_multi_socket_action(client->multi, sock, flags,
										 &running);
			}
		}
	}

	/*
	 * libcurl's timer is one-shot: once it has expired and libcurl has been
	 * told, it is gone until libcurl sets another through set_timer.
	 * Forgetting it here is what keeps an expired timer from making every
	 * later wait return at once.
	 */
	curl_timer_due = (time_to_curl_timer(client) == 0);
	if (curl_timer_due)
	{
		client->timer_ms = -1;
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0,
								 &running);
	}
	else if (nevents == 0 && wait_ms == timeout_ms && curl_wait != 0)
		result |= XPLENTY_WAKE_TIMEOUT;

	collect_finished(client);
	return result;
}

/*
 * xplenty_http_next_finished
 *		Take the next finished request, or NULL if there is none.
 */
XplentyHttpRequest *
xplenty_http_next_finished(XplentyHttpClient *client)
{
	XplentyHttpRequest *req;

	if (dlist_is_empty(&client->finished))
		return NULL;
	req = dlist_container(XplentyHttpRequest, node,
						  dlist_pop_head_node(&client->finished));
	req->on_finished_list = false;
	return req;
}

/*
 * xplenty_http_has_finished
 *		Are there finished requests not yet collected?
 */
bool
xplenty_http_has_finished(XplentyHttpClient *client)
{
	return !dlist_is_empty(&client->finished);
}

/*
 * xplenty_http_in_flight
 *		How many requests are started and not yet finished.
 */
int
xplenty_http_in_flight(XplentyHttpClient *client)
{
	return client->in_flight;
}

/*
 * xplenty_http_cancel
 *		Abandon a request, in flight or finished but not yet collected.
 *
 * A transfer cut off in the middle leaves its connection in an unknown
 * state, so libcurl closes that connection rather than reusing it.
 */
void
xplenty_http_cancel(XplentyHttpClient *client, XplentyHttpRequest *req)
{
	if (req->handle != NULL)
	{
		curl_multi_remove_handle(client->multi, req->handle->curl);
		release_easy_handle(client, req->handle);
		req->handle = NULL;
		client->in_flight--;
	}
	else if (req->on_finished_list)
	{
		dlist_delete(&req->node);
		req->on_finished_list = false;
	}
}

/*
 * xplenty_http_perform
 *		Send one request on the session's client and wait for its end.
 *
 * The wait answers to cancel, statement_timeout and postmaster death: a
 * query cancel arrives as an ERROR from CHECK_FOR_INTERRUPTS, and the
 * request is taken off the multi handle before the error goes on, so that
 * nothing of it is left behind for the next call to trip over.
 */
void
xplenty_http_perform(XplentyHttpRequest *req, const char *api_key)
{
	XplentyHttpClient *client = xplenty_http_session_client();

	xplenty_http_start(client, req, api_key);

	PG_TRY();
	{
		while (req->outcome == XPLENTY_HTTP_PENDING)
		{
			CHECK_FOR_INTERRUPTS();
			(void) xplenty_http_wait(client, -1, PG_WAIT_EXTENSION);
		}
	}
	PG_CATCH();
	{
		xplenty_http_cancel(client, req);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* The session client has only this request: empty its finished list. */
	while (xplenty_http_next_finished(client) != NULL)
		;
}
