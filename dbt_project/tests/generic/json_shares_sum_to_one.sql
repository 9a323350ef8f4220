{# A JSONB object of shares must have values in [0, 1] summing to 1 (empty objects allowed). #}
{% test json_shares_sum_to_one(model, column_name, tolerance=1e-9) %}
with shares as (
    select {{ column_name }} as shares_object,
           (select sum(value::text::double precision) from jsonb_each({{ column_name }})) as share_sum,
           (select count(*) from jsonb_each({{ column_name }})
             where value::text::double precision < 0 or value::text::double precision > 1) as bad_values
    from {{ model }}
    where {{ column_name }} is not null and {{ column_name }} <> '{}'::jsonb
)
select * from shares
where abs(share_sum - 1) > {{ tolerance }} or bad_values > 0
{% endtest %}
