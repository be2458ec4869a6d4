select s.staff_id, s.first_name, s.last_name, d.department_name, d.location, s.email_address
from staff as s
inner join department as d on d.department_id = s.department_id
