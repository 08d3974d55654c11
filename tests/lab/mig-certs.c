/* SPDX-License-Identifier: MIT */
/*
 * mig-certs: certificates for the lab's TLS migration tests.
 *
 *   mig-certs DIR
 *
 * writes DIR/ca.pem (a CA), DIR/dst.{pem,key} (the destination: IP
 * 127.0.0.1, DNS dest.test), DIR/src.{pem,key} (the source), all signed by
 * ca.pem, and DIR/rogue.{pem,key} signed by another CA (a source the
 * destination must refuse).  Prints "CERTS OK".
 */
#include "../certgen.h"

#include <stdlib.h>

static const char *dir;

static bool leaf(const char *name, const char *cn, X509 *ca, EVP_PKEY *cakey, const char *san)
{
	char p[4200];
	EVP_PKEY *k = new_key();
	X509 *x = k ? new_cert(k, cn, ca, cakey, -3600, 86400, san) : NULL;
	snprintf(p, sizeof(p), "%s/%s.pem", dir, name);
	bool ok = x && write_cert(p, x);
	snprintf(p, sizeof(p), "%s/%s.key", dir, name);
	ok = ok && write_key(p, k, NULL);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mig-certs DIR\n");
		return 2;
	}
	dir = argv[1];
	char p[4200];
	EVP_PKEY *ck = new_key(), *ck2 = new_key();
	X509 *ca = ck ? new_cert(ck, "visor lab CA", NULL, NULL, -3600, 86400, NULL) : NULL;
	X509 *ca2 = ck2 ? new_cert(ck2, "another CA", NULL, NULL, -3600, 86400, NULL) : NULL;
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	bool ok = ca && ca2 && write_cert(p, ca) &&
		  leaf("dst", "dest.test", ca, ck, "IP:127.0.0.1,DNS:dest.test") &&
		  leaf("src", "src.test", ca, ck, "DNS:src.test") &&
		  leaf("rogue", "rogue.test", ca2, ck2, "DNS:rogue.test");
	X509_free(ca);
	X509_free(ca2);
	EVP_PKEY_free(ck);
	EVP_PKEY_free(ck2);
	puts(ok ? "CERTS OK" : "CERTS FAILED");
	return ok ? 0 : 1;
}
