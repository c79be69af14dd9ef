/*-------------------------------------------------------------------------
 *
 * poll.c
 *	  Following a submitted job: when to ask about it next, within what
 *	  budget, and what the API's answer says of it.
 *
 * Every GET /jobs/:id spends one of the account's 5,000 credits an hour,
 * shared with everything else that uses the key.  So a job is asked about
 * less often the longer it runs (a tenth of its age, between
 * xplenty.poll_min_interval and xplenty.poll_max_interval), four times
 * less often while the API reports under a tenth of its credits left, and
 * never more than xplenty.poll_budget times an hour in all: a token bucket
 * that holds an hour's budget and refills continuously.
 *
 * src/poll.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "poll.h"

int			xplenty_poll_min_interval_ms = 10000;
int			xplenty_poll_max_interval_ms = 600000;
int			xplenty_poll_budget = 1000;

static double budget_tokens = -1;	/* -1: not filled yet */
static TimestampTz budget_refilled_at = 0;

/*
 * xplenty_job_status_is_final
 *		Has a job in this status ended?
 */
bool
xplenty_job_status_is_final(const char *status)
{
	return status != NULL &&
		(strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
		 strcmp(status, "stopped") == 0);
}

/*
 * xplenty_job_state
 *		Read status, progress, errors and end time from a job.
 *
 * The end time is the job's completed_at or failed_at, or, for a job
 * that ended without either (stopped), its updated_at; a final job whose
 * times cannot be read ends now, so that it is not asked about again.
 */
void
xplenty_job_state(Jsonb *job, XplentyJobState *state)
{
	char	   *text;

	memset(state, 0, sizeof(XplentyJobState));
	state->status = xplenty_jsonb_get_text(job, "status");
	state->has_progress = xplenty_jsonb_get_float8(job, "progress",
												   &state->progress);

	state->errors = xplenty_jsonb_get_text(job, "errors");
	if (state->errors != NULL && state->errors[0] == '\0')
		state->errors = NULL;

	if (!xplenty_job_status_is_final(state->status))
		return;
	if (((text = xplenty_jsonb_get_text(job, "completed_at")) != NULL &&
		 xplenty_parse_api_time(text, &state->finished_at)) ||
		((text = xplenty_jsonb_get_text(job, "failed_at")) != NULL &&
		 xplenty_parse_api_time(text, &state->finished_at)) ||
		((text = xplenty_jsonb_get_text(job, "updated_at")) != NULL &&
		 xplenty_parse_api_time(text, &state->finished_at)))
		return;
	state->finished_at = GetCurrentTimestamp();
}

/*
 * xplenty_poll_delay_ms
 *		How long to wait before asking again about a job of this age.
 */
long
xplenty_poll_delay_ms(double job_age_s, long ratelimit_limit,
					  long ratelimit_remaining)
{
	double		delay = job_age_s * 1000.0 / 10.0;

	delay = Max(delay, (double) xplenty_poll_min_interval_ms);
	delay = Min(delay, (double) xplenty_poll_max_interval_ms);

	if (ratelimit_limit > 0 && ratelimit_remaining >= 0 &&
		ratelimit_remaining < ratelimit_limit / 10)
		delay *= 4;

	/* A tenth either way, so that jobs started together spread out. */
	delay *= 0.9 + pg_prng_double(&pg_global_prng_state) * 0.2;
	return (long) delay;
}

/*
 * refill_budget
 *		Add the tokens earned since the last refill, up to an hour's worth.
 */
static void
refill_budget(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (budget_tokens < 0)
		budget_tokens = xplenty_poll_budget;
	else
	{
		double		seconds = (double) (now - budget_refilled_at) /
			USECS_PER_SEC;

		budget_tokens += seconds * xplenty_poll_budget / 3600.0;
		budget_tokens = Min(budget_tokens, (double) xplenty_poll_budget);
	}
	budget_refilled_at = now;
}

/*
 * xplenty_poll_budget_available
 *		How many polls may be made now.
 */
int
xplenty_poll_budget_available(void)
{
	refill_budget();
	return (int) budget_tokens;
}

/*
 * xplenty_poll_budget_spend
 *		Take polls from the budget.
 */
void
xplenty_poll_budget_spend(int polls)
{
	refill_budget();
	budget_tokens = Max(budget_tokens - polls, 0.0);
}

/*
 * xplenty_poll_budget_wait_ms
 *		Milliseconds until the budget allows one more poll (-1: never, as
 *		with a budget of zero).
 */
long
xplenty_poll_budget_wait_ms(void)
{
	refill_budget();
	if (budget_tokens >= 1)
		return 0;
	if (xplenty_poll_budget <= 0)
		return -1;
	return (long) ((1 - budget_tokens) * 3600000.0 / xplenty_poll_budget) + 1;
}
