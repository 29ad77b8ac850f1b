file(REMOVE_RECURSE
  "CMakeFiles/herald_compliance.dir/placeholder.c.o"
  "CMakeFiles/herald_compliance.dir/placeholder.c.o.d"
  "libherald_compliance.a"
  "libherald_compliance.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/herald_compliance.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
