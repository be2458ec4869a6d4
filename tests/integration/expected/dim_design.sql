select d.design_id, d.design_name, d.file_location, d.file_name
from design as d
