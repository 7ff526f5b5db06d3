/* placeholder until the module lands */ typedef int hw_placeholder_core;
