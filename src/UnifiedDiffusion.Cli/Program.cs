Console.WriteLine("udm: under construction");
