/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/estargz (C++): the simdjson parser's buffers, allocated
 * ahead of a parse with their big interiors on huge pages (json_alloc.cpp). */
#ifndef ESGZ_JSON_ALLOC_H
#define ESGZ_JSON_ALLOC_H

#include <cstddef>

#include <simdjson.h>

/* Gives parser room for a document of len bytes (as iterate() would), its
 * big buffers advised for huge pages before their first write. */
simdjson::error_code esgz_json_parser_prepare(simdjson::ondemand::parser &parser,
					      std::size_t len) noexcept;

#endif
