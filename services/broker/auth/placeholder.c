/* placeholder until the auth module lands */ typedef int brk_auth_placeholder;
