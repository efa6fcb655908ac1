"""The contract's HTTP tests, run again with REDIS_URL naming a Redis Cluster.

Importing the test functions makes pytest collect them here, where this
directory's fixtures (conftest.py) point the projector, the API and the test's
own Redis client at the cluster, with the queue split into 16 shards.
"""

from __future__ import annotations

import pytest

from tests.integration.test_polling_and_push import (  # noqa: F401
    test_a_stage_crossed_by_the_clock_alone_changes_the_etag,
    test_another_service_reads_with_the_shared_reader,
    test_cache_control_follows_the_state,
    test_etag_round_trip_and_304,
    test_metrics_parse_and_count,
    test_queue_overview_matches_sql,
    test_sse_for_an_unknown_name_stays_open_until_it_is_submitted,
    test_sse_pushes_each_committed_change_within_a_second,
)
from tests.integration.test_status_api import (  # noqa: F401
    test_a_committed_change_is_visible_within_a_second,
    test_a_corrupt_document_is_a_500_without_a_traceback,
    test_a_miss_reads_through_and_never_says_not_found_wrongly,
    test_bad_rows_do_not_break_anything,
    test_bulk_update_of_ten_thousand_rows_converges,
    test_deletes_and_renames,
    test_documents_have_ttls_and_the_projector_a_heartbeat,
    test_every_state_answers_what_postgres_says,
    test_invalid_usernames_get_400,
    test_mixed_case_names_and_several_rows,
    test_positions_shift_as_jobs_complete,
    test_truncate_is_followed,
)
from tests.integration.test_streams import (  # noqa: F401
    test_one_stream_follows_many_names_until_all_are_final,
    test_resuming_a_multiplexed_stream_sends_only_what_the_client_lacks,
)

# The imported modules' own marks do not travel with their functions.
pytestmark = pytest.mark.usefixtures("projector")
