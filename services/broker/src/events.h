#ifndef BRK_EVENTS_H
#define BRK_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "impl.h"

// Client lifecycle events (hawser.v1.ClientEvent) for the router, which
// produces them to router.kafka.events_topic. Nothing is built or sent
// while that key is empty (brokers read it from the same configuration as
// the routers).
//
// Each event is one ClientEvent link item sent at once to the router that
// takes the client's publishes (routers[slot % n], as
// brk_publish_upstream), so a client's events reach one router in order.
// Events are best effort: one that cannot be sent (the router's link buffer
// is full) is lost and counted in hawser_broker_events_lost_total.
//
// Worker thread only (they use the worker's outputs).

// brk_events_on tells whether events are wanted (router.kafka.events_topic
// set).
bool brk_events_on(const brk_worker *w);

// brk_events_connected: s's CONNECT was accepted (after the CONNACK).
void brk_events_connected(brk_worker *w, brk_session *s);

// brk_events_disconnected: s's connection ended for `reason` (a word of
// hawser.v1.ClientEvent.reason).
void brk_events_disconnected(brk_worker *w, brk_session *s, const char *reason);

// brk_events_gone: a ConnGone with `cause` for s (MOVED sends nothing: the
// connection lives on at the slot's new owner).
void brk_events_gone(brk_worker *w, brk_session *s, int cause);

// brk_events_subscribed / brk_events_unsubscribed: the SUBACK / UNSUBACK
// of c's packet went out with reason codes rc[0..n); the filters with a
// success code are listed.
void brk_events_subscribed(brk_ctx *c, const uint8_t *rc, uint32_t n);
void brk_events_unsubscribed(brk_ctx *c, const uint8_t *rc, uint32_t n);

#endif
