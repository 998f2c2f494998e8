/* The probe command of cloche-payload (probe.c). */
#pragma once

int cmd_probe(int argc, char **argv);
