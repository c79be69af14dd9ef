/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  Waking the background worker when queued requests are committed.
 *
 * src/wakeup.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_WAKEUP_H
#define XPLENTY_WAKEUP_H

extern void xplenty_wakeup_install_hooks(void);
extern void xplenty_wake_worker_at_commit(void);
extern void xplenty_wake_worker(void);
extern void xplenty_worker_publish_latch(void);

#endif							/* XPLENTY_WAKEUP_H */
