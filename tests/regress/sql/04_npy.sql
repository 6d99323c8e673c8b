-- <npy@> metadata straight from the reference JSON (no store I/O), and ranged reads of objects.
SELECT oas.oas_npy_shape(r) AS shape, oas.oas_npy_dtype(r) AS dtype, oas.oas_npy_ndim(r) AS ndim,
       oas.oas_npy_size(r) AS size, oas.oas_npy_nbytes(r) AS nbytes
FROM (VALUES ('{"path": "_schema/lab/t/id=1/arr_AbCd1234.npy", "store": "nowhere", "dtype": "float32", "shape": [2000, 500]}'::jsonb),
             ('{"path": "p.npy", "store": "nowhere", "dtype": ">i8", "shape": [4, 5, 6]}'),
             ('{"path": "p.npy", "store": "nowhere", "dtype": "complex128", "shape": []}'),
             ('{"path": "p.npy", "store": "nowhere", "dtype": "<U7", "shape": [0, 3]}'),
             ('{"path": "p.npy", "store": "nowhere", "dtype": "mystery", "shape": [3]}'),
             ('{"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "local", "size": 5}')) v(r);
SELECT try($$SELECT oas.oas_npy_shape('{"path": "p.npy", "shape": [3, -1]}')$$);
SELECT try($$SELECT oas.oas_npy_slice('{"path": "p.npy", "store": "nowhere", "dtype": "float32", "shape": [3]}', '0')$$);

-- Ranged reads and sizes of any object.
SELECT oas.oas_hash_put('0123456789abcdef'::bytea, 'local', 'ranged') AS r \gset
SELECT convert_from(oas.oas_read(:'r', 3, 4), 'UTF8') AS middle,
       convert_from(oas.oas_read(:'r', 12, 100), 'UTF8') AS clamped_at_end,
       length(oas.oas_read(:'r', 16, 1)) AS at_end,
       oas.oas_object_size(:'r') AS size;
SELECT try(format('SELECT oas.oas_read(%L, 17, 1)', :'r'));
SELECT try(format('SELECT oas.oas_read(%L, -1, 1)', :'r'));
-- An object that is not an .npy file.
SELECT try(format('SELECT oas.oas_npy_slice(%L)', :'r'));
