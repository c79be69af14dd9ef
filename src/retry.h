/*-------------------------------------------------------------------------
 *
 * retry.h
 *	  When a failed request is tried again.
 *
 * src/retry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_RETRY_H
#define XPLENTY_RETRY_H

extern int	xplenty_max_attempts;
extern int	xplenty_retry_base_delay_ms;
extern int	xplenty_retry_max_delay_ms;

extern long xplenty_retry_delay_ms(int attempts, long retry_after_s);

#endif							/* XPLENTY_RETRY_H */
