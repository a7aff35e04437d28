print("userswitchd: not yet")
