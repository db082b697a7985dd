from mlops_operator.k8s.diff import HASH_ANNOTATION, contains, stamp, up_to_date


def test_server_defaults_do_not_count_as_change():
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "a:1"}]}}}}
    live = {"spec": {"template": {"spec": {"containers": [
        {"name": "server", "image": "a:1", "imagePullPolicy": "IfNotPresent"}], "dnsPolicy": "ClusterFirst"}}}}
    assert contains(live, desired)


def test_a_changed_value_is_a_change():
    assert not contains({"spec": {"replicas": 2}}, {"spec": {"replicas": 3}})
    assert not contains({"spec": {}}, {"spec": {"replicas": 3}})


def test_quantities_compare_by_value():
    assert contains({"cpu": "1"}, {"cpu": "1000m"})
    assert contains({"memory": "1Gi"}, {"memory": "1024Mi"})
    assert not contains({"cpu": "2"}, {"cpu": "1000m"})
    assert not contains({"image": "a"}, {"image": "b"})


def test_named_lists_match_by_name_and_allow_entries_added_by_others():
    desired = {"env": [{"name": "A", "value": "1"}]}
    assert contains({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}, desired)
    assert not contains({"env": [{"name": "A", "value": "2"}]}, desired)


def test_plain_lists_match_by_position_and_length():
    assert contains({"args": ["a", "b"]}, {"args": ["a", "b"]})
    assert not contains({"args": ["a", "b", "c"]}, {"args": ["a", "b"]})
    assert not contains({"args": ["b", "a"]}, {"args": ["a", "b"]})


def test_stamp_detects_a_field_we_stopped_setting():
    old = stamp({"metadata": {"name": "x"}, "spec": {"nodeSelector": {"gpu": "h100"}, "replicas": 1}})
    new = stamp({"metadata": {"name": "x"}, "spec": {"replicas": 1}})
    live = old  # the server holds what we applied before
    assert up_to_date(live, old)
    assert contains(live["spec"], new["spec"])  # the subset test alone would miss it
    assert not up_to_date(live, new)  # the hash does not
    assert old["metadata"]["annotations"][HASH_ANNOTATION] != new["metadata"]["annotations"][HASH_ANNOTATION]


def test_stamp_is_stable():
    obj = {"metadata": {"name": "x", "annotations": {"a": "b"}}, "spec": {"k": [1, 2]}}
    assert stamp(obj) == stamp(stamp(obj))
