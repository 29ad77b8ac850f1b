file(REMOVE_RECURSE
  "CMakeFiles/herald_storage.dir/migrations_embedded.c.o"
  "CMakeFiles/herald_storage.dir/migrations_embedded.c.o.d"
  "CMakeFiles/herald_storage.dir/placeholder.c.o"
  "CMakeFiles/herald_storage.dir/placeholder.c.o.d"
  "libherald_storage.a"
  "libherald_storage.pdb"
  "migrations_embedded.c"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/herald_storage.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
