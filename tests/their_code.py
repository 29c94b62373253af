"""Other projects' own code, copied verbatim so that the tests run it on this project's output
without fetching anything. Not collected by pytest (no test_ prefix).

1. kanishkg/stream-of-search, src/countdown_utils.py, commit 44f2830a1f914d17f0ac3fc47f7231000bbc86c9,
   Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0): simple_rating,
   parse_trajectory and metric_fn, unchanged.
2. LAMDASZ-ML/Self-Backtracking, src/eval_search.py, commit b6be14e1d8ee6351c4a420229d3f22473c58e2f7,
   MIT License, Copyright (c) 2024 (the repository's LICENSE): parse_input and validate_steps,
   unchanged.
3. LAMDASZ-ML/Self-Backtracking, src/train.py (same commit and license): the text built by
   ``tokenize`` and its loss mask. Changed: the mask is returned as a character span of the
   text instead of token positions (their code turns the same two character offsets into
   token counts with the tokenizer), so no tokenizer is needed.

MIT License text for 2 and 3: Permission is hereby granted, free of charge, to any person
obtaining a copy of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights to use, copy,
modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following
conditions: The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT
WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
"""
# flake8: noqa
import re


# ---------------------------------------------------------------- 1. stream-of-search (Apache-2.0)

def simple_rating(search_path):
    # Simple rating function based on number of operations
    nodes_explored = search_path.count("Exploring Operation") + 1
    return nodes_explored


def parse_trajectory(search_path, mode="dt"):
    # Extracting the target and initial numbers from the first line
    first_line = search_path.strip().split('\n')[0]
    search_path = search_path.replace("<|endoftext|>", "")

    # if mode == "dt":
    #     first_line = first_line.split("->")[1]
    target_nums_match = re.match(r"Current State: (\d+):\[(.*?)\]", first_line)
    if not target_nums_match:
        return "Invalid input: Cannot find the initial state in the first line."

    target, nums = int(target_nums_match.group(1)), [int(n) for n in target_nums_match.group(2).split(", ")]

    # Extract the operations from the line that claims the goal is reached.
    goal_lines = re.finditer(r"\d+,\d+ equal: Goal Reached", search_path)
    goal_lines = list(goal_lines)
    if not goal_lines:
        return "No goal reached statement found."

    goal_line = goal_lines[0]
    # get the last operation line before the goal reached statement
    operations = re.findall(r"Exploring Operation: (.*?=\d+), Resulting Numbers: \[(.*?)\]",
                            search_path[:goal_line.start()])
    if not operations:
        return "No operations found leading to the goal."

    final_operation = operations[-1][0]
    try:
        predicted_result = int(final_operation.split('=')[1])
    except:
        print("couldnt parse last op", final_operation)
        return "Couldnt parse last op"
    if predicted_result != target:
        return "Invalid path: Final operation does not result in target."

    # get the last current state, operations before the goal reached statement, and extract the operations
    operation_list = re.findall(r"Current State: \d+:\[.*?\], Operations: \[(.*?)\]", search_path[:goal_line.start()])[
        -1].split(', ')
    operation_list = [op.replace("'", "") for op in operation_list]
    operation_list += [final_operation]

    # Verify each operation and keep track of the numbers involved
    available_numbers = nums
    for operation in operation_list:
        # Verify the operation
        try:
            left, right = operation.split('=')
        except:
            return f"Could not split operation into lhs, rhs"
        try:
            if eval(left) != int(right):
                return f"Invalid operation: {operation}"
        except Exception as e:
            return f"Error in evaluating operation {operation}: {e}"
        # get the numbers involved
        used_numbers = re.findall(r"\d+", left)
        for n in used_numbers:
            if int(n) not in available_numbers:
                return f"Invalid operation: {operation}, number {n} not available in {available_numbers}"

        available_numbers = [n for n in available_numbers if n not in used_numbers]
        available_numbers.append(int(right))

    return "Valid path."


def metric_fn(search_path, mode="dt"):
    rating = parse_trajectory(search_path, mode=mode)
    if rating == "Valid path.":
        score = simple_rating(search_path)
        first_line = search_path.strip().split('\n')[0]
        if "->" in first_line:
            first_line = first_line.split("->")[1]
        target_nums_match = re.match(r"Current State: (\d+):\[(.*?)\]", first_line)
        target, nums = int(target_nums_match.group(1)), [int(n) for n in target_nums_match.group(2).split(", ")]
        if len(nums) == 2:
            # 2c2 x ops (4) = 4
            max_nodes = 4
        elif len(nums) == 3:
            # 3c2 x ops (4) x 2c2 x ops (4) = 48
            max_nodes = 48
        elif len(nums) == 4:
            # 4c2 x ops (4) x 3c2 x ops (4) x 2c2 x ops (4) = 1152
            max_nodes = 1152
        elif len(nums) == 5:
            # 5c2 x ops (4) x 4c2 x ops (4) x 3c2 x ops (4) x 2c2 x ops (4) = 46080
            max_nodes = 46080
        return (max(1. - score / max_nodes, 0.0), rating)
    return (0., rating)

# ---------------------------------------------------------------- 2. Self-Backtracking eval_search.py (MIT)

def parse_input(s):
    numbers_match = re.search(r'numbers \[(.*?)\]', s)
    if numbers_match:
        numbers = eval(numbers_match.group(1))
    else:
        raise ValueError("Not found numbers")
    target_match = re.search(r'target (\d+)', s)
    if target_match:
        target = int(target_match.group(1))
    else:
        raise ValueError("Not found target")
    response_match = re.search(r'###Response:\n(.*?)(?:<backtrack>|Goal Reached!)', s, re.DOTALL)
    if response_match:
        response_steps = response_match.group(1).strip().split('\n')
    else:
        raise ValueError("Not found response")
    return numbers, target, response_steps

def validate_steps(numbers, target, response_steps):
    current_numbers = list(numbers) 
    current_result = None
    steps_valid = True
    reason=''
    for step in response_steps:
        match = re.match(r'(\d+)\s*([+\-*/])\s*(\d+)\s*=\s*(\d+)', step)
        if match:
            num1 = int(match.group(1))
            operator = match.group(2)
            num2 = int(match.group(3))
            result = int(match.group(4))
            
            if num1 not in current_numbers or num2 not in current_numbers:
                steps_valid = False
                reason='Unknown number in step: '+step
                break
            if operator == '+':
                current_result = num1 + num2
            elif operator == '-':
                current_result = num1 - num2
            elif operator == '*':
                current_result = num1 * num2
            elif operator == '/':
                if num2==0:
                    steps_valid = False
                    reason='Division by zero in step: '+step
                    break
                else:
                    current_result = num1 // num2    
            else:
                steps_valid = False
                reason='Unknown operator in step: '+step
                break
            if current_result != result:
                steps_valid = False
                reason='Incorrect result in step: '+step
                break

            current_numbers = [num for num in current_numbers if num != num1]
            current_numbers = [num for num in current_numbers if num != num2]
            current_numbers.append(current_result)
        else:
            steps_valid = False
            reason='Invalid step format: '+step
            break

    if steps_valid and current_result == target:
        return steps_valid,reason
    elif reason=='' and current_result != target:
        steps_valid = False
        reason=f'Not reached target: {result} not equal to {target}'
    return steps_valid,reason


# ---------------------------------------------------------------- 3. Self-Backtracking train.py (MIT)

EOS = "<|end_of_text|>"  # their tokenizer.eos_token (unsloth/Llama-3.2-1B)


def train_text(element_nums, element_target, element_search_path, eos_token=EOS):
    # the text of one sample, as their tokenize() builds it
    return ("###Question: numbers "
            + str(element_nums)
            + "->target "
            + str(element_target)
            + "\n###Response:\n"
            + element_search_path.strip()
            + eos_token)


def train_masked_span(txt):
    """The characters of ``txt`` their tokenize() leaves out of the loss besides the question:
    (start, end), or None when the text has no <backtrack>."""
    if '<backtrack>' in txt:

        # find the second last \n
        last_index = txt.rfind('\n')
        second_last_index = txt.rfind('\n', 0, last_index)

        # text between second last \n and <backtrack>
        # (their code: labels[i, len(tokens(txt[:second_last_index+1])):len(tokens(txt[:last_index+1]))] = -100)
        return second_last_index + 1, last_index + 1
    return None
