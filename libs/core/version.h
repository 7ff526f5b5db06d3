#ifndef HW_CORE_VERSION_H
#define HW_CORE_VERSION_H

// HAWSER_VERSION is the release version printed by every binary's
// -V/--version ("hawser 0.1.0"); keep it equal to project(VERSION) in the
// top-level CMakeLists.txt.
#define HAWSER_VERSION "0.1.0"

#endif
