/* SHA-256 from OpenSSL's libcrypto (libcurl brings it already). */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "cloche/image.h"
#include "image-internal.h"

struct Sha256 {
    EVP_MD_CTX *ctx;
};

int sha256_new(Sha256 **ret)
{
    Sha256 *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        sha256_free(h);
        return -ENOMEM;
    }
    *ret = h;
    return 0;
}

void sha256_update(Sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

void sha256_final(Sha256 *h, char out[72])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    int k = snprintf(out, 72, "sha256:");
    for (unsigned i = 0; i < n && i < 32; i++)
        k += snprintf(out + k, (size_t)(72 - k), "%02x", md[i]);
}

void sha256_free(Sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void image_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
