{# Every key of a JSONB object column must exist in `to`.`field` (relationship for map keys). #}
{% test json_keys_in(model, column_name, to, field) %}
select distinct k.key as unknown_key
from {{ model }} m
cross join lateral jsonb_object_keys(m.{{ column_name }}) as k(key)
where not exists (select 1 from {{ to }} r where r.{{ field }}::text = k.key)
{% endtest %}
