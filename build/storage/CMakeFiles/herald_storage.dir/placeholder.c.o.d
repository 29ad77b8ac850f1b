storage/CMakeFiles/herald_storage.dir/placeholder.c.o: \
 /work/main/storage/placeholder.c /usr/include/stdc-predef.h
