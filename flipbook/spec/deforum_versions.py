"""Which Deforum wrote a settings file, as data: the commits of the A1111 extension whose keyframe parser is the
regular expression of 2022 rather than the split on ``,`` and ``:`` it has used since March 2023.

Deforum writes ``deforum_git_commit_id`` (the first 8 hex digits of its commit, as A1111 shows an extension's
version) into every settings file since commit 8b54a383 (2023-03-11). Its keyframe parser
(``scripts/deforum_helpers/animation_key_frames.py``, ``parse_key_frames``) changed back and forth in early March
2023 and stayed on the split from merge 187e2e6f (2023-03-14) on. The commits below are every commit of
github.com/deforum-art/sd-webui-deforum that writes the id and still has the regular expression: the commit list
was walked and each commit's ``animation_key_frames.py`` read. Any other id (newer commits, forks, "Unknown") is
read the current way.
"""

from __future__ import annotations

REGEX_PARSER_COMMITS: frozenset[str] = frozenset(
    {
        "03fabdfb", "04537641", "0476e413", "088634c2", "0be0aa42", "0f0674a7", "12ad8a78", "12d04a68",
        "150e6a44", "1ce8ff4e", "1d8c4669", "1dd360cc", "1de59aa6", "2751003a", "2c10600c", "363e07ac",
        "368e471d", "370ef15c", "38cbd075", "39d1b524", "39ef3537", "3d211612", "3dd0af8b", "3de25675",
        "4387ab58", "44266999", "466e64a7", "48027d11", "4a475ccc", "4a9279be", "4bd61b0b", "4c5a7a91",
        "4e827e7c", "4fd4f42a", "52500d0a", "5351cc41", "58c7889e", "5be4f921", "5d31dda5", "60b186e6",
        "60fcc288", "62706856", "652bda9e", "67351f8a", "67c76fba", "69324233", "6cb40bd4", "6d9033f1",
        "6f0d30c4", "700be843", "71e38815", "73c26cef", "77f1c181", "791cb46e", "8415fa10", "841619ef",
        "8466349e", "8651591e", "87726cfc", "8b54a383", "8f894d06", "941f1421", "943023ce", "a1c44ef4",
        "a3b1864d", "a3ed3a2a", "a83626bf", "ab8650a3", "ac8306c7", "b00d7069", "b8fe729f", "bb3b7bbd",
        "bdde2609", "c11e8afd", "c5dbaf7e", "c6560e8d", "c6e76ad7", "ca3ab146", "d4438b56", "d522be48",
        "d6809215", "d701305b", "d7c9c24e", "d8751fb3", "d8d851db", "d95593ea", "dc4cfede", "e36bb2b5",
        "e67339c8", "e7022770", "eabfd505", "eda38d1e", "ee7420c3", "f06c222b", "f2092f06", "f4d97158",
        "f96c2d82", "fa06205e", "fab84e4b",
    }
)  # fmt: skip
"""8-digit commit prefixes of the extension that write ``deforum_git_commit_id`` and parse keyframes with the
regular expression."""

SPLIT_PARSER_SINCE = "187e2e6f"
"""The merge (2023-03-14) after which the extension's keyframe parser splits on ``,`` and ``:``."""
