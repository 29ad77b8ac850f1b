file(REMOVE_RECURSE
  "libherald_storage.a"
)
