file(REMOVE_RECURSE
  "libherald_common.a"
)
