/*-------------------------------------------------------------------------
 *
 * poll.h
 *	  Following a submitted job: when to ask about it next, within what
 *	  budget, and what the API's answer says of it.
 *
 * src/poll.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_POLL_H
#define XPLENTY_POLL_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

extern int	xplenty_poll_min_interval_ms;
extern int	xplenty_poll_max_interval_ms;
extern int	xplenty_poll_budget;

/* What a job's answer says of it, as the queue keeps it. */
typedef struct XplentyJobState
{
	char	   *status;			/* NULL if the answer has none */
	double		progress;
	bool		has_progress;
	char	   *errors;			/* NULL if empty */
	TimestampTz finished_at;	/* 0 while the job has not ended */
} XplentyJobState;

extern void xplenty_job_state(Jsonb *job, XplentyJobState *state);
extern bool xplenty_job_status_is_final(const char *status);
extern long xplenty_poll_delay_ms(double job_age_s, long ratelimit_limit,
								  long ratelimit_remaining);
extern int	xplenty_poll_budget_available(void);
extern void xplenty_poll_budget_spend(int polls);
extern long xplenty_poll_budget_wait_ms(void);

#endif							/* XPLENTY_POLL_H */
