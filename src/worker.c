/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker that sends queued requests to the API.
 *
 * One worker serves the database named by xplenty.database.  Each round of
 * its loop runs one short transaction that records the answers that came
 * in, claims due requests up to xplenty.max_in_flight, and commits; only
 * then are the claimed requests sent, all at once over libcurl's multi
 * interface, and the worker sleeps on its latch until an answer arrives, a
 * backend commits new requests (see wakeup.c), or a retry comes due.
 *
 * The order of those steps is the whole of the worker's promise.  A
 * request's row says 'submitting' on disk before its request leaves, and
 * the worker never holds a transaction open while it waits for the API.
 * So if the worker or the server dies at any point, a row is either still
 * 'queued' (nothing was sent) or 'submitting' (something may have been),
 * and at start-up every 'submitting' row becomes 'checking': the worker
 * asks the API whether the job exists before it sends anything again (see
 * job_check.c).  Nothing queued is lost and nothing is sent twice blind.
 *
 * Once a request is submitted, the worker follows its job (GET /jobs/:id,
 * paced and budgeted by poll.c) until it ends, keeps its status on the
 * row, announces each change with a NOTIFY, and releases the requests
 * that wait for it.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "api.h"
#include "config.h"
#include "failure.h"
#include "http_client.h"
#include "job_check.h"
#include "poll.h"
#include "queue.h"
#include "retry.h"
#include "standby.h"
#include "wakeup.h"
#include "worker.h"

PGDLLEXPORT void xplenty_worker_main(Datum main_arg);

/* How long the worker sleeps when there is nothing it knows of to do. */
#define IDLE_SLEEP_MS 60000

/* How often it looks again for the extension, or for the end of recovery. */
#define ABSENT_SLEEP_MS 10000

/* How long answers already on their way are awaited at shutdown. */
#define SHUTDOWN_GRACE_MS 3000

/* How often finished requests past their retention are deleted. */
#define CLEANUP_INTERVAL_MS 60000
#define CLEANUP_BATCH 10000

/* How long a paused worker waits when the API's credits run low. */
#define LOW_CREDIT_PAUSE_MS 60000

typedef enum InFlightKind
{
	IN_FLIGHT_SEND,				/* POST /jobs */
	IN_FLIGHT_CHECK,			/* GET /jobs, looking for a lost job */
	IN_FLIGHT_POLL				/* GET /jobs/:id, following a job */
} InFlightKind;

/* A request of the queue whose HTTP request is in flight. */
typedef struct InFlight
{
	XplentyHttpRequest http;
	InFlightKind kind;
	XplentyQueuedRequest *queued;	/* in its own context; see queue.c */
	int			page;			/* for a check: the page asked for */
} InFlight;

static volatile sig_atomic_t shutdown_requested = false;

static XplentyHttpClient *client = NULL;
static MemoryContext requests_context = NULL;
static List *to_start = NIL;	/* claimed, to send after the commit */
static TimestampTz paused_until = 0;
static TimestampTz last_cleanup = 0;
static bool orphans_recovered = false;

static void handle_sigterm(SIGNAL_ARGS);
static bool configuration_usable(void);
static void wait_for_news(long timeout_ms);
static long run_round(bool accept_work);
static void record_answer(InFlight *inflight);
static void record_send(InFlight *inflight);
static void record_check(InFlight *inflight);
static void record_poll(InFlight *inflight);
static void record_job(XplentyQueuedRequest *q, int64 job_id, Jsonb *job,
					   const char *note);
static int	claim_work(int room);
static long time_until_due(void);
static void send_after_commit(InFlight *inflight);
static void start_requests(void);
static void finish_in_flight(InFlight *inflight);
static char *failure_text(const XplentyFailure *failure);
static void note_rate_limit(const XplentyHttpRequest *http,
							const XplentyFailure *failure, int attempts);

/*
 * xplenty_register_worker
 *		Register the worker; called from _PG_init in the postmaster.
 *
 * It starts only once recovery has finished, so a standby runs no worker
 * at all until it is promoted; then it picks up the queue it replicated.
 */
void
xplenty_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "xplenty", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "xplenty_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "xplenty worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "xplenty worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * handle_sigterm
 *		Ask the worker to stop taking work and leave.
 *
 * Unlike die(), this does not end the process in the middle of a wait:
 * the loop first records the answers already on their way, for up to
 * SHUTDOWN_GRACE_MS, so that fewer rows are left to check at restart.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * make_commits_durable
 *		Make sure the worker's commits wait for the disk (and for
 *		synchronous standbys), whatever synchronous_commit says.
 *
 * A claim that is lost in a crash after its request was sent would send
 * the request again; so would a claim lost in a failover to a standby that
 * had not received it.
 */
static void
make_commits_durable(void)
{
	const char *current = GetConfigOption("synchronous_commit", false, false);

	if (strcmp(current, "off") == 0 || strcmp(current, "local") == 0)
		SetConfigOption("synchronous_commit", "on", PGC_SUSET,
						PGC_S_OVERRIDE);
}

/*
 * xplenty_worker_main
 *		Entry point of the background worker.
 */
void
xplenty_worker_main(Datum main_arg)
{
	TimestampTz shutdown_deadline = 0;

	(void) main_arg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	/* A query cancel has no query to cancel here; it must not kill us. */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(xplenty_database, NULL, 0);
	pgstat_report_appname("xplenty worker");
	make_commits_durable();

	ereport(LOG,
			(errmsg("xplenty worker started for database \"%s\"",
					xplenty_database)));

	xplenty_worker_publish_latch();
	client = xplenty_http_client_create(TopMemoryContext,
										xplenty_max_in_flight);
	requests_context = AllocSetContextCreate(TopMemoryContext,
											 "xplenty requests",
											 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			make_commits_durable();
			xplenty_http_client_set_max_connections(client,
													xplenty_max_in_flight);
		}

		if (shutdown_requested && shutdown_deadline == 0)
			shutdown_deadline =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											SHUTDOWN_GRACE_MS);

		timeout = run_round(!shutdown_requested);

		if (shutdown_requested)
		{
			long		left;

			left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												   shutdown_deadline);
			if (xplenty_http_in_flight(client) == 0 || left <= 0)
				break;
			timeout = left;
		}

		pgstat_report_activity(STATE_IDLE, NULL);
		wait_for_news(timeout);
	}

	ereport(LOG,
			(errmsg("xplenty worker shutting down with %d requests in "
					"flight", xplenty_http_in_flight(client)),
			 xplenty_http_in_flight(client) > 0 ?
			 errdetail("They will be checked with the API when the worker "
					   "starts again.") : 0));
	proc_exit(1);
}

/*
 * wait_for_news
 *		Sleep until an answer is complete, the latch is set, or timeout_ms
 *		(-1: no limit) passes.
 *
 * Progress on a transfer that leaves it unfinished (a socket became
 * writable, half an answer arrived) is no reason for a round and its
 * transaction, so those wake-ups just go back to sleep.
 */
static void
wait_for_news(long timeout_ms)
{
	TimestampTz deadline = 0;

	if (timeout_ms >= 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   timeout_ms);
	for (;;)
	{
		int			wake;

		wake = xplenty_http_wait(client, timeout_ms, PG_WAIT_EXTENSION);
		if (wake != 0 || xplenty_http_has_finished(client) ||
			shutdown_requested || ConfigReloadPending)
			return;
		if (timeout_ms >= 0)
		{
			timeout_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														 deadline);
			if (timeout_ms <= 0)
				return;
		}
	}
}

/*
 * configuration_usable
 *		Can requests be sent with the settings in force?  If not, say why
 *		in the log (once for each new reason) and send nothing.
 *
 * Checked before anything is claimed: a request claimed and then not sent
 * because the key file cannot be read would be left 'submitting', and
 * checked with the API for no reason.
 */
static bool
configuration_usable(void)
{
	static char *last_problem = NULL;
	MemoryContext oldcontext = CurrentMemoryContext;
	volatile bool usable = true;

	PG_TRY();
	{
		char	   *key = xplenty_get_api_key();

		explicit_bzero(key, strlen(key));
		pfree(key);
		(void) xplenty_get_account_id();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		if (last_problem == NULL || strcmp(last_problem, edata->message) != 0)
		{
			ereport(LOG,
					(errmsg("xplenty worker cannot send requests: %s",
							edata->message),
					 edata->hint ? errhint("%s", edata->hint) : 0));
			if (last_problem)
				pfree(last_problem);
			last_problem = MemoryContextStrdup(TopMemoryContext,
											   edata->message);
		}
		FreeErrorData(edata);
		usable = false;
	}
	PG_END_TRY();

	if (usable && last_problem != NULL)
	{
		pfree(last_problem);
		last_problem = NULL;
	}
	return usable;
}

/*
 * cleanup_due
 *		Is it time to delete finished requests past their retention?
 */
static bool
cleanup_due(TimestampTz now)
{
	if (xplenty_queue_retention_s < 0)
		return false;
	return last_cleanup == 0 ||
		TimestampDifferenceExceeds(last_cleanup, now, CLEANUP_INTERVAL_MS);
}

/*
 * run_round
 *		Record what has come in and, if accept_work, claim what is due, in
 *		one transaction; then send what was claimed.  Return how long the
 *		worker may sleep before it must look at the queue again.
 */
static long
run_round(bool accept_work)
{
	XplentyHttpRequest *finished;
	long		timeout = IDLE_SLEEP_MS;
	TimestampTz now = GetCurrentTimestamp();
	int			room;

	if (RecoveryInProgress())
		return ABSENT_SLEEP_MS;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "xplenty worker: queue round");

	if (!xplenty_queue_exists())
	{
		/* Requests in flight were claimed from a queue dropped since. */
		while ((finished = xplenty_http_next_finished(client)) != NULL)
			finish_in_flight((InFlight *) finished->owner);
		timeout = ABSENT_SLEEP_MS;
		orphans_recovered = false;
		accept_work = false;
	}
	else
	{
		if (!orphans_recovered)
		{
			int			n = xplenty_queue_recover();

			if (n > 0)
				ereport(LOG,
						(errmsg("xplenty worker found %d requests that may "
								"have been sent before it stopped", n),
						 errdetail("Each is checked with the API before it "
								   "is sent again.")));
			orphans_recovered = true;
		}

		while ((finished = xplenty_http_next_finished(client)) != NULL)
			record_answer((InFlight *) finished->owner);
		xplenty_queue_write_answers();
	}

	room = xplenty_max_in_flight - xplenty_http_in_flight(client) -
		list_length(to_start);
	if (accept_work && paused_until > now)
	{
		timeout = TimestampDifferenceMilliseconds(now, paused_until);
		accept_work = false;
	}
	if (accept_work && !configuration_usable())
	{
		timeout = ABSENT_SLEEP_MS;
		accept_work = false;
	}
	if (accept_work)
	{
		/* Released requests are claimed below, in this same round. */
		bool		released = xplenty_queue_resolve_waiting() > 0;

		if (room > 0)
			room -= claim_work(room);

		/* With room left, nothing more is due now: sleep till the next. */
		if (released)
			timeout = 0;
		else if (room > 0)
			timeout = time_until_due();
		else
			timeout = 0;

		if (cleanup_due(now))
		{
			int64		n;

			n = xplenty_queue_delete_finished(xplenty_queue_retention_s,
											  CLEANUP_BATCH);
			last_cleanup = now;
			if (n > 0)
				elog(DEBUG1, "xplenty worker deleted " INT64_FORMAT
					 " finished requests", n);
		}
	}

	xplenty_warn_async_standbys(now);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);

	/* Only now that the claims are on disk may their requests leave. */
	start_requests();

	/* Room freed by finished requests is used as soon as they come in. */
	if (timeout == 0)
		timeout = xplenty_http_in_flight(client) > 0 ? IDLE_SLEEP_MS : 0;
	return timeout;
}

/*
 * new_in_flight
 *		An in-flight record for a claimed request, in the request's context.
 */
static InFlight *
new_in_flight(XplentyQueuedRequest *q, InFlightKind kind)
{
	InFlight   *inflight = MemoryContextAllocZero(q->context,
												  sizeof(InFlight));

	inflight->kind = kind;
	inflight->queued = q;
	return inflight;
}

/*
 * prepare_in_flight
 *		Fill in the HTTP request of an in-flight record.
 */
static void
prepare_in_flight(InFlight *inflight)
{
	XplentyQueuedRequest *q = inflight->queued;
	MemoryContext oldcontext = MemoryContextSwitchTo(q->context);

	switch (inflight->kind)
	{
		case IN_FLIGHT_SEND:
			xplenty_prepare_run_job(&inflight->http, &q->request);
			break;
		case IN_FLIGHT_CHECK:
			xplenty_prepare_job_check(&inflight->http, q, inflight->page);
			break;
		case IN_FLIGHT_POLL:
			memset(&inflight->http, 0, sizeof(XplentyHttpRequest));
			inflight->http.method = XPLENTY_HTTP_GET;
			inflight->http.url =
				xplenty_api_endpoint(psprintf("jobs/" INT64_FORMAT,
											  q->job_id));
			break;
	}
	inflight->http.owner = inflight;
	MemoryContextSwitchTo(oldcontext);
	send_after_commit(inflight);
}

/*
 * claim_work
 *		Claim up to room requests: some to check, those to send, more to
 *		check, then jobs to ask about, as far as the poll budget allows.
 *		Returns how many were claimed.
 */
static int
claim_work(int room)
{
	long		hold = (long) xplenty_request_timeout_ms + 10000;
	int			claimed = 0;
	int			polls;
	List	   *list;
	ListCell   *lc;

	/*
	 * Checks first, up to a quarter of the room: behind a backlog of sends
	 * they would otherwise wait for all of it, and a late check has more of
	 * the package's jobs to read through.
	 */
	list = xplenty_queue_claim("checking", Max(room / 4, 1), hold,
							   requests_context);
	foreach(lc, list)
		prepare_in_flight(new_in_flight(lfirst(lc), IN_FLIGHT_CHECK));
	claimed += list_length(list);

	if (claimed < room)
	{
		list = xplenty_queue_claim("queued", room - claimed, 0,
								   requests_context);
		foreach(lc, list)
			prepare_in_flight(new_in_flight(lfirst(lc), IN_FLIGHT_SEND));
		claimed += list_length(list);
	}

	if (claimed < room)
	{
		list = xplenty_queue_claim("checking", room - claimed, hold,
								   requests_context);
		foreach(lc, list)
			prepare_in_flight(new_in_flight(lfirst(lc), IN_FLIGHT_CHECK));
		claimed += list_length(list);
	}

	polls = Min(room - claimed, xplenty_poll_budget_available());
	if (polls > 0)
	{
		list = xplenty_queue_claim_polls(polls, hold, requests_context);
		foreach(lc, list)
			prepare_in_flight(new_in_flight(lfirst(lc), IN_FLIGHT_POLL));
		xplenty_poll_budget_spend(list_length(list));
		claimed += list_length(list);
	}
	return claimed;
}

/*
 * time_until_due
 *		How long until a request is due to be sent or checked, or a job to
 *		be asked about within the poll budget; at most IDLE_SLEEP_MS.
 */
static long
time_until_due(void)
{
	long		send_ms;
	long		poll_ms;
	long		budget_ms = xplenty_poll_budget_wait_ms();
	long		timeout = IDLE_SLEEP_MS;

	xplenty_queue_ms_until_due(&send_ms, &poll_ms);
	if (poll_ms >= 0)
		poll_ms = budget_ms < 0 ? -1 : Max(poll_ms, budget_ms);
	if (send_ms >= 0)
		timeout = Min(timeout, Max(send_ms, 1));
	if (poll_ms >= 0)
		timeout = Min(timeout, Max(poll_ms, 1));
	return timeout;
}

/*
 * send_after_commit
 *		Have a request sent once the current round's transaction commits.
 */
static void
send_after_commit(InFlight *inflight)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(requests_context);

	to_start = lappend(to_start, inflight);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * start_requests
 *		Send the requests claimed in the round that just committed.
 */
static void
start_requests(void)
{
	ListCell   *lc;
	char	   *api_key = NULL;

	if (to_start == NIL)
		return;

	api_key = xplenty_get_api_key();
	foreach(lc, to_start)
	{
		InFlight   *inflight = lfirst(lc);
		MemoryContext oldcontext;

		oldcontext = MemoryContextSwitchTo(inflight->queued->context);
		xplenty_http_start(client, &inflight->http, api_key);
		MemoryContextSwitchTo(oldcontext);
	}
	explicit_bzero(api_key, strlen(api_key));
	pfree(api_key);
	list_free(to_start);
	to_start = NIL;
}

/*
 * finish_in_flight
 *		Forget a request whose answer has been recorded.
 */
static void
finish_in_flight(InFlight *inflight)
{
	MemoryContextDelete(inflight->queued->context);
}

/*
 * failure_text
 *		A failure as one line for the queue's last_error.
 */
static char *
failure_text(const XplentyFailure *failure)
{
	if (failure->detail != NULL)
		return psprintf("%s: %s", failure->message, failure->detail);
	return pstrdup(failure->message);
}

/*
 * note_rate_limit
 *		Pause all sending when the API says its credits are out or low.
 *
 * The API blacklists clients that keep calling once over the limit, so a
 * 429 stops every request, not just the one that got it: for as long as
 * its Retry-After says, or else for the request's backoff delay.
 */
static void
note_rate_limit(const XplentyHttpRequest *http, const XplentyFailure *failure,
				int attempts)
{
	TimestampTz now = GetCurrentTimestamp();
	long		pause_ms = 0;

	if (failure != NULL && failure->status == 429)
		pause_ms = xplenty_retry_delay_ms(attempts, http->retry_after);
	else if (http->ratelimit_remaining >= 0 &&
			 http->ratelimit_remaining <= xplenty_rate_limit_reserve)
		pause_ms = LOW_CREDIT_PAUSE_MS;

	if (pause_ms > 0)
	{
		TimestampTz until = TimestampTzPlusMilliseconds(now, pause_ms);

		if (until > paused_until)
		{
			if (paused_until <= now)
				ereport(LOG,
						(errmsg("xplenty worker pauses for %ld ms: the API's "
								"rate limit is reached or close", pause_ms),
						 errdetail("X-RateLimit-Remaining is %ld; "
								   "xplenty.rate_limit_reserve is %d.",
								   http->ratelimit_remaining,
								   xplenty_rate_limit_reserve)));
			paused_until = until;
		}
	}
}

/*
 * record_answer
 *		Record in the queue what became of a request; the caller's
 *		transaction commits it.
 */
static void
record_answer(InFlight *inflight)
{
	switch (inflight->kind)
	{
		case IN_FLIGHT_SEND:
			record_send(inflight);
			break;
		case IN_FLIGHT_CHECK:
			record_check(inflight);
			break;
		case IN_FLIGHT_POLL:
			record_poll(inflight);
			break;
	}
}

/*
 * record_job
 *		A request's job is known, from a 201 or from a check: record it and
 *		announce its first status.
 */
static void
record_job(XplentyQueuedRequest *q, int64 job_id, Jsonb *job,
		   const char *note)
{
	XplentyJobState state;

	xplenty_job_state(job, &state);
	xplenty_queue_set_submitted(q->id, job_id, job, &state,
								xplenty_poll_delay_ms(0, -1, -1), note);
	xplenty_queue_notify(q->id, job_id, state.status);
}

/*
 * record_poll
 *		Record what the API said of a followed job, announcing a change of
 *		status.  A poll that fails is only tried again later: that the API
 *		could not be reached says nothing about the job.
 */
static void
record_poll(InFlight *inflight)
{
	XplentyQueuedRequest *q = inflight->queued;
	XplentyHttpRequest *http = &inflight->http;
	XplentyFailure failure;
	MemoryContext oldcontext = MemoryContextSwitchTo(q->context);
	long		delay = xplenty_poll_delay_ms(q->job_age_s,
											  http->ratelimit_limit,
											  http->ratelimit_remaining);
	bool		failed;

	failed = !xplenty_answered_with(http, 200) &&
		xplenty_describe_failure(http, 200,
								 psprintf("could not get Xplenty job "
										  INT64_FORMAT, q->job_id),
								 &failure);
	note_rate_limit(http, failed ? &failure : NULL, 1);
	if (!failed)
	{
		int64		job_id;
		char	   *problem;
		Jsonb	   *job = xplenty_parse_job(http->answer, http->answer_len,
											&job_id, &problem);

		if (job != NULL)
		{
			XplentyJobState state;

			xplenty_job_state(job, &state);
			xplenty_queue_set_job(q->id, job, &state, delay);
			if (state.status != NULL &&
				(q->job_status == NULL ||
				 strcmp(state.status, q->job_status) != 0))
				xplenty_queue_notify(q->id, q->job_id, state.status);
		}
		else
			xplenty_queue_set_poll_failed(q->id,
										  psprintf("the answer about job "
												   INT64_FORMAT " cannot be "
												   "read: %s", q->job_id,
												   problem),
										  delay);
	}
	else
		xplenty_queue_set_poll_failed(q->id, failure_text(&failure), delay);

	MemoryContextSwitchTo(oldcontext);
	finish_in_flight(inflight);
}

/*
 * record_send
 *		Record the outcome of a POST /jobs.
 */
static void
record_send(InFlight *inflight)
{
	XplentyQueuedRequest *q = inflight->queued;
	XplentyHttpRequest *http = &inflight->http;
	XplentyFailure failure;
	MemoryContext oldcontext = MemoryContextSwitchTo(q->context);

	if (xplenty_answered_with(http, 201) ||
		!xplenty_describe_failure(http, 201,
								  xplenty_run_job_message(&q->request),
								  &failure))
	{
		int64		job_id;
		char	   *problem;
		Jsonb	   *job;

		note_rate_limit(http, NULL, q->attempts);
		job = xplenty_parse_job(http->answer, http->answer_len, &job_id,
								&problem);
		if (job != NULL)
			record_job(q, job_id, job, NULL);
		else
			xplenty_queue_set_pending(q->id, "checking",
									  xplenty_retry_delay_ms(1, 0),
									  psprintf("the API created a job but "
											   "its answer cannot be read: "
											   "%s", problem),
									  false);
	}
	else
	{
		char	   *text = failure_text(&failure);

		note_rate_limit(http, &failure, q->attempts);
		switch (failure.retry)
		{
			case XPLENTY_RETRY_NEVER:
				ereport(LOG,
						(errmsg("xplenty worker gave up queued request "
								INT64_FORMAT, q->id),
						 errdetail("%s", text)));
				xplenty_queue_set_final(q->id, "failed", text);
				break;
			case XPLENTY_RETRY_SAFE:
				if (q->attempts >= xplenty_max_attempts)
				{
					ereport(LOG,
							(errmsg("xplenty worker gave up queued request "
									INT64_FORMAT " after %d attempts",
									q->id, q->attempts),
							 errdetail("%s", text)));
					xplenty_queue_set_final(q->id, "failed",
											psprintf("gave up after %d "
													 "attempts: %s",
													 q->attempts, text));
				}
				else
				{
					long		delay;

					delay = xplenty_retry_delay_ms(q->attempts,
												   http->retry_after);

					xplenty_queue_set_pending(q->id, "queued", delay, text,
											  false);
				}
				break;
			case XPLENTY_RETRY_AFTER_CHECK:
				xplenty_queue_set_pending(q->id, "checking",
										  xplenty_retry_delay_ms(q->attempts,
																 0),
										  text, false);
				break;
		}
	}

	MemoryContextSwitchTo(oldcontext);
	finish_in_flight(inflight);
}

/*
 * record_check
 *		Record the outcome of one page of a check: adopt the job found,
 *		queue the request to be sent again, read the next page, or say
 *		that nobody can tell.
 */
static void
record_check(InFlight *inflight)
{
	XplentyQueuedRequest *q = inflight->queued;
	XplentyHttpRequest *http = &inflight->http;
	XplentyFailure failure;
	XplentyCheckResult result;
	List	   *matches;
	bool		more_pages;
	ListCell   *lc;
	MemoryContext oldcontext = MemoryContextSwitchTo(q->context);

	result = xplenty_job_check_answer(http, q, inflight->page, &matches,
									  &more_pages, &failure);

	/* An identical request in flight could create the job we would find. */
	if (result != XPLENTY_CHECK_FAILED && xplenty_queue_twin_submitting(q))
	{
		xplenty_queue_set_pending(q->id, "checking",
								  xplenty_retry_delay_ms(1, 0),
								  "checked again later: an identical request "
								  "was being sent", false);
		MemoryContextSwitchTo(oldcontext);
		finish_in_flight(inflight);
		return;
	}
	note_rate_limit(http, result == XPLENTY_CHECK_FAILED ? &failure : NULL,
					q->checks);

	if (result == XPLENTY_CHECK_MATCHES)
	{
		foreach(lc, matches)
		{
			XplentyJobMatch *match = lfirst(lc);

			if (xplenty_queue_job_adopted(match->job_id))
				continue;
			ereport(LOG,
					(errmsg("xplenty worker adopted job " INT64_FORMAT
							" for queued request " INT64_FORMAT,
							match->job_id, q->id),
					 errdetail("The answer to the request was lost; a "
							   "check found the job it created.")));
			record_job(q, match->job_id, match->job,
					   "job found by a check after the answer was lost");
			MemoryContextSwitchTo(oldcontext);
			finish_in_flight(inflight);
			return;
		}
		result = xplenty_job_check_next(inflight->page, more_pages);
	}

	switch (result)
	{
		case XPLENTY_CHECK_MATCHES:
			break;
		case XPLENTY_CHECK_NEXT_PAGE:
			{
				long		hold = (long) xplenty_request_timeout_ms + 10000;

				/* Keep the row from being claimed again meanwhile. */
				xplenty_queue_set_pending(q->id, "checking", hold, NULL,
										  false);
				inflight->page++;
				MemoryContextSwitchTo(oldcontext);
				prepare_in_flight(inflight);
				return;
			}
		case XPLENTY_CHECK_NONE:
			if (q->attempts >= xplenty_max_attempts)
				xplenty_queue_set_final(q->id, "failed",
										psprintf("gave up after %d attempts; "
												 "a check found that the "
												 "last one created no job",
												 q->attempts));
			else
				xplenty_queue_set_pending(q->id, "queued", 0,
										  "sent again: a check found that "
										  "the previous attempt created no "
										  "job", true);
			break;
		case XPLENTY_CHECK_FAILED:
			if (q->checks >= xplenty_max_attempts)
			{
				char	   *text = psprintf("gave up checking after %d "
											"tries, so whether the job was "
											"created is unknown: %s",
											q->checks,
											failure_text(&failure));

				ereport(LOG,
						(errmsg("xplenty worker cannot tell whether queued "
								"request " INT64_FORMAT " created a job",
								q->id),
						 errdetail("%s", text),
						 errhint("Look for the job on Xplenty; then set the "
								 "row's status to 'queued' to send it "
								 "again, or to 'failed'.")));
				xplenty_queue_set_final(q->id, "unknown", text);
			}
			else
			{
				long		delay = xplenty_retry_delay_ms(q->checks,
														   http->retry_after);

				xplenty_queue_set_pending(q->id, "checking", delay,
										  failure_text(&failure), false);
			}
			break;
		case XPLENTY_CHECK_TOO_MANY:
			xplenty_queue_set_final(q->id, "unknown",
									psprintf("the package has more than %d "
											 "jobs from 5 minutes before "
											 "the request's first send to "
											 "5 minutes after its last, "
											 "too many to look through",
											 XPLENTY_CHECK_MAX_PAGES * 100));
			break;
	}

	MemoryContextSwitchTo(oldcontext);
	finish_in_flight(inflight);
}
