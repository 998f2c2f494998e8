/* placeholder: being written */
typedef int cloche_placeholder_disk;
