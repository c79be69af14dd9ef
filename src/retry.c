/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  When a failed request is tried again.
 *
 * Which failures are retried at all is decided in failure.c; this file
 * decides when.  The delay doubles with each attempt, from
 * xplenty.retry_base_delay up to xplenty.retry_max_delay, and a random
 * half of it is dropped ("equal jitter"), so that requests that failed
 * together (the API was down for a minute) do not all come back at the
 * same instant.  A Retry-After from the API is a floor under the delay.
 *
 * src/retry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"

#include "retry.h"

int			xplenty_max_attempts = 10;
int			xplenty_retry_base_delay_ms = 1000;
int			xplenty_retry_max_delay_ms = 300000;

/*
 * xplenty_retry_delay_ms
 *		How long to wait before the next try, after attempts tries.
 */
long
xplenty_retry_delay_ms(int attempts, long retry_after_s)
{
	double		delay = xplenty_retry_base_delay_ms;
	long		result;

	for (int i = 1; i < attempts && delay < xplenty_retry_max_delay_ms; i++)
		delay *= 2;
	delay = Min(delay, (double) xplenty_retry_max_delay_ms);

	result = (long) (delay / 2 +
					 pg_prng_double(&pg_global_prng_state) * delay / 2);

	if (retry_after_s > 0)
		result = Max(result, retry_after_s * 1000);
	return result;
}
