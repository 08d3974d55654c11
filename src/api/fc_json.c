/* SPDX-License-Identifier: MIT */
/* placeholder until the Firecracker JSON layer lands (branch api-json) */
#include "fc_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fc_parse_request(const char *method, const char *path, const char *body, size_t body_len,
		     struct vm_action *a, int *status, char *fault, size_t faultlen)
{
	*status = 400;
	snprintf(fault, faultlen, "not implemented");
	return -1;
}

char *fc_format_reply(const struct vm_action *a, const struct vm_reply *r, size_t *len)
{
	*len = 0;
	return NULL;
}

int fc_config_file_actions(const char *json, size_t len, struct vm_action **acts, size_t *n,
			   char *err, size_t errlen)
{
	snprintf(err, errlen, "not implemented");
	return -1;
}
