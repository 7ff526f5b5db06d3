// Error descriptions (core/err.h).

#include "core/err.h"

const char *hw_strerror(hw_err err)
{
	switch (err) {
	case HW_OK: return "success";
	case HW_ENOMEM: return "out of memory";
	case HW_EINVAL: return "invalid argument";
	case HW_EAGAIN: return "try again";
	case HW_EMALFORMED: return "malformed input";
	case HW_EPROTO: return "protocol error";
	case HW_ETOOBIG: return "too big";
	case HW_EUNSUPPORTED: return "not supported";
	case HW_ENOTFOUND: return "not found";
	case HW_EEXIST: return "already exists";
	case HW_EFULL: return "full";
	case HW_ECLOSED: return "closed";
	case HW_ETIMEDOUT: return "timed out";
	case HW_EIO: return "I/O error";
	case HW_ECONFIG: return "invalid configuration";
	case HW_EDENIED: return "not authorized";
	case HW_EINTERNAL: return "internal error";
	}
	return "unknown error";
}
