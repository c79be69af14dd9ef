/*
 * libcurl_client.c
 *	  The practical limit for bench/run.sh: the same POST /jobs that
 *	  xplenty_run_job() makes, N times over one libcurl easy handle, so
 *	  that one kept-alive connection carries every request.
 *
 *	  usage: libcurl_client URL API_KEY N [easy|easy-headers|multi|parallel K]
 *	  prints: calls=N seconds=S calls_per_sec=R new_connections=C
 *	          cpu_seconds=T (the process's user + system CPU time for
 *	          the timed calls)
 *
 *	  One untimed request first opens the connection (warm-up); every answer
 *	  must be 201 or the program fails.
 *
 *	  easy (the default, the practical limit): curl_easy_perform on one
 *	  handle set up once, the key given as CURLOPT_USERNAME; the body is
 *	  read and thrown away.
 *
 *	  easy-headers (a diagnostic): easy, but with User-Agent and the Basic
 *	  Authorization made once and given as headers, as the extension does
 *	  since session 3, so that libcurl does not format them again for each
 *	  request.  The bytes sent are the extension's.
 *
 *	  multi (a diagnostic): the HTTP path of the extension's
 *	  src/http_client.c without PostgreSQL: a multi handle driven through
 *	  its socket and timer callbacks and a two-level epoll (the extension
 *	  waits on a WaitEventSet holding its own epoll set), a connection's
 *	  socket left in the epoll set between requests, the easy handle given
 *	  the extension's options (and headers, as easy-headers) once and then
 *	  only what points into each request, the body collected into a growing
 *	  buffer and the headers scanned.
 *	  What separates easy from multi is the cost of that HTTP path; what
 *	  separates multi from xplenty_run_job() is PostgreSQL's (executor,
 *	  request body, JSON parsing of the answer).
 *
 *	  parallel K (for bench/queue.sh): K easy handles set up once, on one
 *	  multi handle with at most K connections, each sending its next POST
 *	  as soon as its answer is in, so that K requests are always in flight:
 *	  what the peer sustains at the concurrency the queue's worker uses.
 *	  The warm-up is K untimed requests at once, which open the K
 *	  connections.
 *
 *	  Build: gcc -O2 -o libcurl_client libcurl_client.c \
 *	             $(curl-config --cflags --libs)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

static const char body[] = "{\"cluster_id\": 52, \"package_id\": 434}";

static size_t
discard(char *data, size_t size, size_t nmemb, void *arg)
{
	(void) data;
	(void) arg;
	return size * nmemb;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* User + system CPU time of this process so far, in seconds. */
static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The line every mode prints, which bench/run.sh and queue.sh read. */
static void
print_result(long n, double seconds, long new_connections, double cpu)
{
	printf("calls=%ld seconds=%.6f calls_per_sec=%.1f new_connections=%ld "
		   "cpu_seconds=%.6f\n", n, seconds, n / seconds, new_connections,
		   cpu);
}

/* One POST; returns the number of new connections it opened, or -1. */
static long
post_once(CURL *easy, long i)
{
	CURLcode	rc;
	long		status = 0;
	long		connects = 0;

	rc = curl_easy_perform(easy);
	if (rc != CURLE_OK)
	{
		fprintf(stderr, "request %ld: %s\n", i, curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 201)
	{
		fprintf(stderr, "request %ld: status %ld, expected 201\n", i, status);
		return -1;
	}
	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
	return connects;
}

/* ---------------------------------------------------------------- multi */

typedef struct
{
	CURLM	   *multi;
	int			inner_epoll;	/* the sockets libcurl asked for */
	int			outer_epoll;	/* stands in for the WaitEventSet */
	long		timer_ms;
	struct timeval timer_set_at;
	char	   *answer;
	size_t		answer_len;
	size_t		answer_cap;
	long		attempts;
	long		ratelimit;
	int			set_up;			/* the easy handle has its options */
	unsigned char wanted[1024];	/* by socket: libcurl wants its events */
	unsigned char in_epoll[1024];	/* by socket: registered, and how */
	char		errbuf[CURL_ERROR_SIZE];
} MultiClient;

/* As watch_socket: a connection's socket stays in epoll while idle. */
static int
m_watch_socket(CURL *easy, curl_socket_t sock, int what, void *arg, void *sarg)
{
	MultiClient *c = arg;
	struct epoll_event ev;
	unsigned char events = 0;

	(void) easy;
	(void) sarg;
	if (sock < 0 || sock >= (curl_socket_t) sizeof(c->wanted))
		return -1;
	if (what == CURL_POLL_REMOVE)
	{
		c->wanted[sock] = 0;
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = sock;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
	{
		ev.events |= EPOLLIN;
		events |= 1;
	}
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
	{
		ev.events |= EPOLLOUT;
		events |= 2;
	}
	c->wanted[sock] = 1;
	if (c->in_epoll[sock] == (events | 4))
		return 0;
	if (epoll_ctl(c->inner_epoll, c->in_epoll[sock] ? EPOLL_CTL_MOD :
				  EPOLL_CTL_ADD, sock, &ev) != 0)
		return -1;
	c->in_epoll[sock] = events | 4;
	return 0;
}

/* As close_socket: out of epoll, then closed. */
static int
m_close_socket(void *arg, curl_socket_t sock)
{
	MultiClient *c = arg;

	if (sock >= 0 && sock < (curl_socket_t) sizeof(c->wanted))
	{
		if (c->in_epoll[sock])
			(void) epoll_ctl(c->inner_epoll, EPOLL_CTL_DEL, sock, NULL);
		c->in_epoll[sock] = c->wanted[sock] = 0;
	}
	return close(sock);
}

static int
m_set_timer(CURLM *multi, long timeout_ms, void *arg)
{
	MultiClient *c = arg;

	(void) multi;
	c->timer_ms = timeout_ms;
	gettimeofday(&c->timer_set_at, NULL);	/* GetCurrentTimestamp() */
	return 0;
}

static long
m_time_to_timer(MultiClient *c)
{
	struct timeval now_tv;
	long		elapsed;

	if (c->timer_ms <= 0)
		return c->timer_ms;
	gettimeofday(&now_tv, NULL);
	elapsed = (now_tv.tv_sec - c->timer_set_at.tv_sec) * 1000 +
		(now_tv.tv_usec - c->timer_set_at.tv_usec) / 1000;
	return c->timer_ms > elapsed ? c->timer_ms - elapsed : 0;
}

static size_t
m_collect_answer(char *data, size_t size, size_t nmemb, void *arg)
{
	MultiClient *c = arg;
	size_t		len = size * nmemb;

	if (c->answer_len + len + 1 > c->answer_cap)
	{
		size_t		cap = c->answer_cap ? c->answer_cap * 2 : 1024;
		char	   *grown;

		while (cap < c->answer_len + len + 1)
			cap *= 2;
		grown = malloc(cap);
		if (grown == NULL)
			return 0;
		if (c->answer)
		{
			memcpy(grown, c->answer, c->answer_len);
			free(c->answer);
		}
		c->answer = grown;
		c->answer_cap = cap;
	}
	memcpy(c->answer + c->answer_len, data, len);
	c->answer_len += len;
	c->answer[c->answer_len] = '\0';
	return len;
}

static size_t
m_collect_header(char *data, size_t size, size_t nitems, void *arg)
{
	MultiClient *c = arg;
	size_t		total = size * nitems;
	size_t		len = total;
	char		line[1024];

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		return total;
	if (len >= sizeof(line))
		return total;
	memcpy(line, data, len);
	line[len] = '\0';
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';
	if (strncasecmp(line, "X-RateLimit-Remaining:", 22) == 0 ||
		strncasecmp(line, "X-RateLimit-Limit:", 18) == 0 ||
		strncasecmp(line, "Link:", 5) == 0)
		c->ratelimit++;
	return total;
}

static int
m_before_sending(void *arg, char *pip, char *lip, int pport, int lport)
{
	MultiClient *c = arg;

	(void) pip;
	(void) lip;
	(void) pport;
	(void) lport;
	return ++c->attempts > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* As set_up_easy_handle: every option that stays the same, once. */
static void
m_set_up_easy(MultiClient *c, CURL *easy, const char *url,
			  struct curl_slist *headers)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, 30L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) 10485760);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, m_collect_answer);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, m_collect_header);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, m_before_sending);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, m_close_socket);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	c->set_up = 1;
}

/* One POST the way src/http_client.c makes it; returns new connections. */
static long
m_post_once(MultiClient *c, CURL *easy, const char *url,
			struct curl_slist *headers, long i)
{
	char	   *url_copy = strdup(url);	/* psprintf'd per call */
	char	   *body_copy = strdup(body);	/* built per call */
	CURLMsg    *msg;
	int			left,
				running;
	long		status = 0,
				connects = 0;
	curl_off_t	total_us,
				retry_after;
	CURLcode	result = CURLE_OK;
	int			done = 0;

	c->answer = NULL;
	c->answer_len = c->answer_cap = 0;
	c->attempts = 0;
	if (!c->set_up)
		m_set_up_easy(c, easy, url_copy, headers);
	/* What points into this request (the URL is the same every time). */
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, c);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, c);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t) strlen(body_copy));
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body_copy);

	if (curl_multi_add_handle(c->multi, easy) != CURLM_OK)
		return -1;

	while (!done)
	{
		struct epoll_event outer[3];
		long		wait_ms = m_time_to_timer(c);
		int			n = epoll_wait(c->outer_epoll, outer, 3, (int) wait_ms);

		for (int k = 0; k < n; k++)
		{
			struct epoll_event ready[64];
			int			nready = epoll_wait(c->inner_epoll, ready, 64, 0);

			for (int j = 0; j < nready; j++)
			{
				int			sock = ready[j].data.fd;
				int			flags = 0;

				if (!c->wanted[sock])
				{
					(void) epoll_ctl(c->inner_epoll, EPOLL_CTL_DEL, sock,
									 NULL);
					c->in_epoll[sock] = 0;
					continue;
				}
				if (ready[j].events & EPOLLIN)
					flags |= CURL_CSELECT_IN;
				if (ready[j].events & EPOLLOUT)
					flags |= CURL_CSELECT_OUT;
				if (ready[j].events & (EPOLLERR | EPOLLHUP))
					flags |= CURL_CSELECT_ERR;
				curl_multi_socket_action(c->multi, sock, flags, &running);
			}
		}
		if (m_time_to_timer(c) == 0)
			curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0,
									 &running);
		while ((msg = curl_multi_info_read(c->multi, &left)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE)
			{
				result = msg->data.result;
				done = 1;
			}
		}
	}

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
	curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after);
	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
	curl_multi_remove_handle(c->multi, easy);
	free(url_copy);
	free(body_copy);
	free(c->answer);
	if (result != CURLE_OK)
	{
		fprintf(stderr, "request %ld: %s: %s\n", i,
				curl_easy_strerror(result), c->errbuf);
		return -1;
	}
	if (status != 201)
	{
		fprintf(stderr, "request %ld: status %ld, expected 201\n", i, status);
		return -1;
	}
	return connects;
}

static int
run_multi(const char *url, long n, struct curl_slist *headers)
{
	MultiClient c;
	struct epoll_event ev;
	CURL	   *easy = curl_easy_init();
	long		new_connections = 0;
	double		start,
				seconds,
				cpu;

	memset(&c, 0, sizeof(c));
	c.timer_ms = -1;
	c.multi = curl_multi_init();
	c.inner_epoll = epoll_create1(EPOLL_CLOEXEC);
	c.outer_epoll = epoll_create1(EPOLL_CLOEXEC);
	if (easy == NULL || c.multi == NULL || c.inner_epoll < 0 ||
		c.outer_epoll < 0)
		return 1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = c.inner_epoll;
	epoll_ctl(c.outer_epoll, EPOLL_CTL_ADD, c.inner_epoll, &ev);
	curl_multi_setopt(c.multi, CURLMOPT_SOCKETFUNCTION, m_watch_socket);
	curl_multi_setopt(c.multi, CURLMOPT_SOCKETDATA, &c);
	curl_multi_setopt(c.multi, CURLMOPT_TIMERFUNCTION, m_set_timer);
	curl_multi_setopt(c.multi, CURLMOPT_TIMERDATA, &c);

	if (m_post_once(&c, easy, url, headers, 0) < 0)
		return 1;
	start = now();
	cpu = cpu_seconds();
	for (long i = 1; i <= n; i++)
	{
		long		k = m_post_once(&c, easy, url, headers, i);

		if (k < 0)
			return 1;
		new_connections += k;
	}
	seconds = now() - start;
	cpu = cpu_seconds() - cpu;
	print_result(n, seconds, new_connections, cpu);
	curl_easy_cleanup(easy);
	curl_multi_cleanup(c.multi);
	return 0;
}

/* ---------------------------------------------------------------- parallel */

static void
setup_easy(CURL *easy, const char *url, const char *key,
		   struct curl_slist *headers)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	if (key != NULL)
	{
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(easy, CURLOPT_USERNAME, key);
		curl_easy_setopt(easy, CURLOPT_PASSWORD, "");
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) (sizeof(body) - 1));
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
}

/*
 * n requests with k in flight; returns the new connections opened, or -1.
 */
static long
parallel_batch(CURLM *multi, CURL **handles, long k, long n)
{
	long		started = 0,
				done = 0,
				connects = 0;
	int			running,
				left;
	CURLMsg    *msg;

	for (long i = 0; i < k && started < n; i++, started++)
		curl_multi_add_handle(multi, handles[i]);
	while (done < n)
	{
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			return -1;
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			CURL	   *easy = msg->easy_handle;
			long		status = 0,
						c = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			if (msg->data.result != CURLE_OK)
			{
				fprintf(stderr, "request %ld: %s\n", done,
						curl_easy_strerror(msg->data.result));
				return -1;
			}
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
			if (status != 201)
			{
				fprintf(stderr, "request %ld: status %ld, expected 201\n",
						done, status);
				return -1;
			}
			curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &c);
			connects += c;
			done++;
			curl_multi_remove_handle(multi, easy);
			if (started < n)
			{
				curl_multi_add_handle(multi, easy);
				started++;
			}
		}
		if (done < n)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	return connects;
}

static int
run_parallel(const char *url, const char *key, long n, long k,
			 struct curl_slist *headers)
{
	CURLM	   *multi = curl_multi_init();
	CURL	  **handles = calloc(k, sizeof(CURL *));
	long		new_connections;
	double		start,
				seconds,
				cpu;

	if (multi == NULL || handles == NULL)
		return 1;
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, k);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, k);
	for (long i = 0; i < k; i++)
	{
		if ((handles[i] = curl_easy_init()) == NULL)
			return 1;
		setup_easy(handles[i], url, key, headers);
	}
	/* Warm-up: k at once, which opens the k connections. */
	if (parallel_batch(multi, handles, k, k) < 0)
		return 1;
	start = now();
	cpu = cpu_seconds();
	new_connections = parallel_batch(multi, handles, k, n);
	if (new_connections < 0)
		return 1;
	seconds = now() - start;
	cpu = cpu_seconds() - cpu;
	print_result(n, seconds, new_connections, cpu);
	for (long i = 0; i < k; i++)
		curl_easy_cleanup(handles[i]);
	curl_multi_cleanup(multi);
	return 0;
}

/*
 * The headers of easy-headers and multi: the common ones, then User-Agent
 * and "Authorization: Basic base64(KEY:)".  NULL if memory ran out.
 */
static struct curl_slist *
with_key_headers(struct curl_slist *common, const char *key)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		len = strlen(key) + 1;
	unsigned char *user = malloc(len + 1);
	char	   *line = malloc(32 + 4 * (len / 3 + 1));
	char	   *out;
	struct curl_slist *list = NULL;

	if (user == NULL || line == NULL)
		return NULL;
	snprintf((char *) user, len + 1, "%s:", key);
	out = line + sprintf(line, "Authorization: Basic ");
	for (size_t i = 0; i < len; i += 3)
	{
		unsigned long v = (unsigned long) user[i] << 16;

		if (i + 1 < len)
			v |= (unsigned long) user[i + 1] << 8;
		if (i + 2 < len)
			v |= user[i + 2];
		*out++ = b64[(v >> 18) & 63];
		*out++ = b64[(v >> 12) & 63];
		*out++ = (i + 1 < len) ? b64[(v >> 6) & 63] : '=';
		*out++ = (i + 2 < len) ? b64[v & 63] : '=';
	}
	*out = '\0';
	for (struct curl_slist *h = common; h != NULL; h = h->next)
		list = curl_slist_append(list, h->data);
	list = curl_slist_append(list, "User-Agent: xplenty-postgresql/1.0");
	list = curl_slist_append(list, line);
	free(user);
	free(line);
	return list;
}

int
main(int argc, char **argv)
{
	CURL	   *easy;
	struct curl_slist *headers = NULL;
	long		n;
	long		k = 0;
	long		new_connections = 0;
	double		start,
				seconds,
				cpu;

	if (argc < 4 || argc > 6 || (n = atol(argv[3])) <= 0 ||
		(argc == 5 && strcmp(argv[4], "easy") != 0 &&
		 strcmp(argv[4], "easy-headers") != 0 &&
		 strcmp(argv[4], "multi") != 0) ||
		(argc == 6 && (strcmp(argv[4], "parallel") != 0 ||
					   (k = atol(argv[5])) <= 0)))
	{
		fprintf(stderr, "usage: %s URL API_KEY N "
				"[easy|easy-headers|multi|parallel K]\n", argv[0]);
		return 2;
	}

	curl_global_init(CURL_GLOBAL_ALL);
	easy = curl_easy_init();
	headers = curl_slist_append(headers,
								"Accept: application/vnd.xplenty+json; "
								"version=2");
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Expect:");
	if (easy == NULL || headers == NULL)
	{
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	if (argc == 6)
		return run_parallel(argv[1], argv[2], n, k, headers);
	if (argc == 5 && strcmp(argv[4], "easy") != 0)
	{
		struct curl_slist *keyed = with_key_headers(headers, argv[2]);

		if (keyed == NULL)
		{
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		if (strcmp(argv[4], "multi") == 0)
			return run_multi(argv[1], n, keyed);
		setup_easy(easy, argv[1], NULL, keyed);
	}
	else
		setup_easy(easy, argv[1], argv[2], headers);

	/* Warm-up: open the connection. */
	if (post_once(easy, 0) < 0)
		return 1;

	start = now();
	cpu = cpu_seconds();
	for (long i = 1; i <= n; i++)
	{
		long		c = post_once(easy, i);

		if (c < 0)
			return 1;
		new_connections += c;
	}
	seconds = now() - start;

	cpu = cpu_seconds() - cpu;
	print_result(n, seconds, new_connections, cpu);

	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
	curl_global_cleanup();
	return 0;
}
