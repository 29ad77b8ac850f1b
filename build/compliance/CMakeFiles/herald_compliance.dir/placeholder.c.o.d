compliance/CMakeFiles/herald_compliance.dir/placeholder.c.o: \
 /work/main/compliance/placeholder.c /usr/include/stdc-predef.h
