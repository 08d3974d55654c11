/* SPDX-License-Identifier: MIT */
/*
 * certgen.h - test certificates made with OpenSSL's API (no `openssl`
 * command needed): EC P-256 keys, a self-signed CA, leaves it signs with
 * serverAuth+clientAuth, a validity window and a subjectAltName.  Used by
 * the transport's unit tests and by lab-tools/mig-certs (the lab's TLS
 * migration tests).  Header-only: static functions.
 */
#ifndef VISOR_TESTS_CERTGEN_H
#define VISOR_TESTS_CERTGEN_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

__attribute__((unused)) static EVP_PKEY *new_key(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

__attribute__((unused)) static bool add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	bool ok = e && X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

/* A certificate for @key named @cn, signed by @issuer (NULL: self-signed,
 * a CA), valid from @from to @to seconds from now, with SAN @san. */
__attribute__((unused)) static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, long from,
		      long to, const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();
	if (!x)
		return NULL;
	bool ca = issuer == NULL;
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, ca ? n : X509_get_subject_name(issuer));
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, ca ? x : issuer, x, NULL, NULL, 0);
	bool ok = add_ext(x, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE") &&
		  add_ext(x, &v3, NID_key_usage,
			  ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") &&
		  add_ext(x, &v3, NID_subject_key_identifier, "hash") &&
		  (ca || add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth")) &&
		  (!san || add_ext(x, &v3, NID_subject_alt_name, san)) &&
		  X509_sign(x, ca ? key : ikey, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

__attribute__((unused)) static bool write_cert(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");
	bool ok = f && PEM_write_X509(f, x);
	if (f)
		fclose(f);
	return ok;
}

__attribute__((unused)) static bool write_key(const char *path, EVP_PKEY *k, const char *pass)
{
	FILE *f = fopen(path, "w");
	bool ok = f && PEM_write_PrivateKey(f, k, pass ? EVP_aes_128_cbc() : NULL,
					    (const unsigned char *)pass, pass ? (int)strlen(pass) : 0,
					    NULL, NULL);
	if (f)
		fclose(f);
	return ok;
}

#endif
