#ifndef HW_CORE_SLOT_H
#define HW_CORE_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

// Session slots: every client id hashes to one of HW_SLOTS slots, and each
// slot is owned by one broker. Edges, brokers and routers compute the same
// answer from the same member list (rendezvous hashing), so no coordinator is
// needed and a change of membership moves only the slots of the changed
// member.

#define HW_SLOTS 1024u

// hw_slot_of returns the slot of a client id.
uint32_t hw_slot_of(hw_bytes client_id);

// hw_slot_owner returns the index in members[0..n) of the owner of slot, or
// -1 when n == 0. members are broker ids (their inbox URLs).
int hw_slot_owner(uint32_t slot, const char *const *members, size_t n);

#endif
