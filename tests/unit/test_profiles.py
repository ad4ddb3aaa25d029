"""Profiles as pure code (parley/profiles.py): what a profile change asks for, what others see,
and the directory's search keys and terms."""

from __future__ import annotations

import msgspec
import pytest

from parley.errors import BadRequest
from parley.profiles import (
    ProfileBody, directory_prefix, key_successor, my_profile, profile_patch, public_profile, search_key, search_terms,
)
from parley.records import Account, AccountPatch


def test_a_profile_change_trims_text_clears_with_null_or_blank_and_refuses_nothing_to_change():
    patch = profile_patch(ProfileBody(display_name="  Ada \t Lovelace ", status_text="   ", discoverable=False))
    assert patch == AccountPatch(display_name="Ada Lovelace", status_text=None, discoverable=False)
    assert profile_patch(ProfileBody(display_name=None)) == AccountPatch(display_name=None)
    assert profile_patch(ProfileBody(avatar=None)) == AccountPatch(avatar=None)
    assert profile_patch(ProfileBody(status_text="two\nlines\u2028")) == AccountPatch(status_text="two lines")
    with pytest.raises(BadRequest):
        profile_patch(ProfileBody())


@pytest.mark.parametrize("text", ["a\u202eb", "nul\x00", "zero\u200bwidth", "bell\x07"])
def test_control_and_format_characters_are_refused_in_profile_text(text):
    with pytest.raises(BadRequest):
        profile_patch(ProfileBody(status_text=text))


def test_others_see_the_public_profile_without_the_owners_settings():
    account = Account(id="u1", username="ada", created_at=1, display_name="Ada", discoverable=False,
                      status="active", role="admin")
    public = msgspec.json.decode(msgspec.json.encode(public_profile(account)))
    assert public == {"id": "u1", "username": "ada", "display_name": "Ada", "avatar": None, "status_text": None}
    assert my_profile(account).discoverable is False


def test_search_keys_fold_case_width_and_accents():
    assert search_key("  Zoë   ÉLAN ") == "zoe elan"
    assert search_key("Ｆｕｌｌ") == "full"  # full-width letters
    assert search_terms("zoe_1", "Zoë Maria de la Cruz Smith") == {
        "zoe_1", "zoe maria de la cruz smith", "zoe", "maria", "de", "la"}  # the first four words
    assert search_terms("bob", None) == {"bob"}


def test_a_directory_query_is_a_key_of_two_to_sixty_four_characters():
    assert directory_prefix(" Zo ") == "zo"
    for bad in ("z", " é ", "x" * 65):
        with pytest.raises(BadRequest):
            directory_prefix(bad)


def test_the_successor_of_a_prefix_bounds_exactly_the_strings_that_start_with_it():
    end = key_successor("ab")
    assert "ab" < "abzzz" < end and not "ac" < end
