#ifndef HW_CORE_ERR_H
#define HW_CORE_ERR_H

// One error enum for the whole repository. Functions return hw_err (HW_OK on
// success) and deliver results through out-parameters; errno and library
// codes are mapped to these once, where the call is made.
typedef enum hw_err {
	HW_OK = 0,
	HW_ENOMEM,      // allocation failed
	HW_EINVAL,      // bad argument or value
	HW_EAGAIN,      // not enough input yet / try again later
	HW_EMALFORMED,  // peer sent bytes that break the wire format
	HW_EPROTO,      // well-formed but violates the protocol rules
	HW_ETOOBIG,     // over a configured or protocol size limit
	HW_EUNSUPPORTED,// valid, but not supported (e.g. protocol version)
	HW_ENOTFOUND,   // no such key / session / peer
	HW_EEXIST,      // already exists
	HW_EFULL,       // bounded queue or table is full
	HW_ECLOSED,     // object is closing or closed
	HW_ETIMEDOUT,
	HW_EIO,         // I/O or system call failure
	HW_ECONFIG,     // configuration is invalid
	HW_EDENIED,     // not authorized
	HW_EINTERNAL,   // invariant broke in a dependency
} hw_err;

// hw_strerror returns a static, human-readable description of err.
const char *hw_strerror(hw_err err);

#endif
