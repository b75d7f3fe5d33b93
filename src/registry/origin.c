// SPDX-License-Identifier: Apache-2.0
/* Where a URL points (scheme, host, port), for the one question credentials
 * depend on: is this the host they belong to? */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "transport.h"

int reg_origin_parse(const char *url, struct reg_origin *o)
{
	memset(o, 0, sizeof(*o));
	CURLU *u = curl_url();
	if (!u)
		return -ENOMEM;
	char *scheme = NULL, *host = NULL, *port = NULL;
	int r = -EINVAL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
	    strlen(scheme) < sizeof(o->scheme) && strlen(host) < sizeof(o->host) && *host) {
		char *end = NULL;
		long p = strtol(port, &end, 10);
		if (end && *end == '\0' && p > 0 && p < 65536) {
			snprintf(o->scheme, sizeof(o->scheme), "%s", scheme);
			snprintf(o->host, sizeof(o->host), "%s", host);
			o->port = p;
			r = 0;
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

int reg_host_origin(const struct reg_host *h, struct reg_origin *o)
{
	char url[600];
	int n = snprintf(url, sizeof(url), "%s://%s/", h->scheme, h->host);
	if (n < 0 || (size_t)n >= sizeof(url))
		return -ENAMETOOLONG;
	return reg_origin_parse(url, o);
}

bool reg_origin_same_host(const struct reg_origin *a, const struct reg_origin *b)
{
	return strcasecmp(a->host, b->host) == 0;
}

bool reg_origin_equal(const struct reg_origin *a, const struct reg_origin *b)
{
	return strcasecmp(a->scheme, b->scheme) == 0 && reg_origin_same_host(a, b) &&
	       a->port == b->port;
}
