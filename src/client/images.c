// SPDX-License-Identifier: Apache-2.0
/* containerd's images service: Create, Update, Delete. */
#include <errno.h>
#include <string.h>

#include "client/client_internal.h"
#include "services_images_v1_images.pb-c.h"

#define IMAGES "/containerd.services.images.v1.Images/"

struct pb_image {
	Containerd__Services__Images__V1__Image img;
	Containerd__Types__Descriptor target;
	void *labels;
	void *annotations;
};

static int image_to_pb(const struct ctrd_image *in, struct pb_image *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	containerd__services__images__v1__image__init(&out->img);
	if (ctrd_descriptor_to_pb(&in->target, &out->target, &out->annotations) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	out->img.name = (char *)in->name;
	out->img.target = &out->target;
	if (in->n_labels) {
		out->labels = ctrd_pb_kv_new(
		    &containerd__services__images__v1__image__labels_entry__descriptor, in->labels,
		    in->n_labels);
		if (!out->labels) {
			free(out->annotations);
			return rs_err(err, -ENOMEM, "out of memory");
		}
		out->img.n_labels = in->n_labels;
		out->img.labels = out->labels;
	}
	return 0;
}

static void pb_image_free(struct pb_image *p)
{
	free(p->labels);
	free(p->annotations);
}

int ctrd_image_create(struct ctrd_client *c, const struct ctrd_image *img, struct rs_error *err)
{
	struct pb_image p;
	int rc = image_to_pb(img, &p, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Images__V1__CreateImageRequest req =
	    CONTAINERD__SERVICES__IMAGES__V1__CREATE_IMAGE_REQUEST__INIT;
	req.image = &p.img;
	rc = ctrd_call(c, IMAGES "Create", &req.base, NULL, NULL, 0, err);
	pb_image_free(&p);
	return rc;
}

int ctrd_image_update(struct ctrd_client *c, const struct ctrd_image *img, struct rs_error *err)
{
	struct pb_image p;
	int rc = image_to_pb(img, &p, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Images__V1__UpdateImageRequest req =
	    CONTAINERD__SERVICES__IMAGES__V1__UPDATE_IMAGE_REQUEST__INIT;
	req.image = &p.img;
	rc = ctrd_call(c, IMAGES "Update", &req.base, NULL, NULL, 0, err);
	pb_image_free(&p);
	return rc;
}

int ctrd_image_put(struct ctrd_client *c, const struct ctrd_image *img, bool *created,
		   struct rs_error *err)
{
	int rc = -EEXIST;
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = ctrd_image_create(c, img, err);
		if (rc != -EEXIST) {
			if (created)
				*created = rc == 0;
			return rc;
		}
		rc = ctrd_image_update(c, img, err);
		if (rc != -ENOENT) { /* -ENOENT: removed meanwhile, create again */
			if (created)
				*created = false;
			return rc;
		}
	}
	return rc;
}
